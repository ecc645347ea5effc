//! Responses that make no progress.
//!
//! hyper polls a response body only when it can send what the body yields. A
//! client that stops reading (a full TCP send buffer, or an HTTP/2 stream window
//! it never opens) leaves the body unpolled, so a timer that is polled with the
//! body never fires. The origin's side of such a response would stay open: its
//! HTTP/2 stream keeps a stream slot and its share of the pooled connection's
//! window, or its HTTP/1.1 connection stays out of the pool.
//!
//! A [`ResponseWatch`] follows the response bodies of one client connection from
//! outside the bodies, and ends each one that has not yielded a frame for the idle
//! timeout, whether its origin went quiet or its client stopped reading. Ending a
//! body drops the origin's body, which resets its HTTP/2 stream or closes its
//! HTTP/1.1 connection, and makes the next poll of the body fail.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use prometheus::IntCounter;
use tokio::time::Instant;

use crate::body::{count_against_limit, BodyError, BoxError};
use crate::budget::Reservation;
use crate::upstream::StreamLease;

/// The response bodies of one client connection, checked for progress.
pub(crate) struct ResponseWatch {
    opened: Instant,
    idle_timeout: Duration,
    bodies: Mutex<Watched>,
    /// Counts the bodies ended.
    ended: IntCounter,
}

/// The bodies registered on a watch, some of which may be gone.
struct Watched {
    slots: Vec<Weak<Slot>>,
    /// Registering a body drops the gone ones once `slots` reaches this length,
    /// so a long connection between two checks keeps a bounded list.
    prune_at: usize,
}

/// The shared state of one watched body.
struct Slot {
    /// Nanoseconds from the watch's opening to the body's last frame, or to its
    /// registration before the first. It is `u64::MAX` once the body has finished
    /// or the watch has ended it, and is written under `state`'s lock.
    last_progress_ns: AtomicU64,
    state: Mutex<SlotState>,
}

struct SlotState {
    /// The origin's body; none once the watch has ended it.
    origin: Option<Incoming>,
    /// The response buffer reservation, given back when the origin's body is
    /// finished, fails or is dropped.
    reservation: Reservation,
    /// The count of the response's stream in its origin pool, released with
    /// `reservation`.
    lease: StreamLease,
    /// The task that last found the body pending, woken when the watch ends it.
    waker: Option<Waker>,
}

/// The smallest list length at which registering prunes gone bodies.
const PRUNE_FLOOR: usize = 64;

impl ResponseWatch {
    /// Returns a watch for a connection opened now, ending bodies idle for
    /// `idle_timeout` and counting them in `ended`.
    pub(crate) fn new(idle_timeout: Duration, ended: IntCounter) -> Arc<ResponseWatch> {
        Arc::new(ResponseWatch {
            opened: Instant::now(),
            idle_timeout,
            bodies: Mutex::new(Watched {
                slots: Vec::new(),
                prune_at: PRUNE_FLOOR,
            }),
            ended,
        })
    }

    /// Wraps the origin's response body, counting `limit` bytes at most, and
    /// registers it. The body keeps `reservation` for as long as the origin's body
    /// may buffer, and `lease` for as long as the origin's stream is open.
    pub(crate) fn watch(
        &self,
        origin: Incoming,
        limit: u64,
        reservation: Reservation,
        lease: StreamLease,
    ) -> WatchedBody {
        let slot = Arc::new(Slot {
            last_progress_ns: AtomicU64::new(self.now_ns()),
            state: Mutex::new(SlotState {
                origin: Some(origin),
                reservation,
                lease,
                waker: None,
            }),
        });
        let mut bodies = lock(&self.bodies);
        if bodies.slots.len() >= bodies.prune_at {
            bodies.slots.retain(|slot| slot.strong_count() > 0);
            bodies.prune_at = (bodies.slots.len() * 2).max(PRUNE_FLOOR);
        }
        bodies.slots.push(Arc::downgrade(&slot));
        drop(bodies);
        WatchedBody {
            slot,
            opened: self.opened,
            idle_timeout: self.idle_timeout,
            limit,
            seen: 0,
        }
    }

    /// Ends every registered body that has yielded no frame for the idle timeout,
    /// for as long as it is polled.
    pub(crate) async fn end_stalled(&self) -> Infallible {
        loop {
            self.first_stalled().await;
        }
    }

    /// Checks the registered bodies whenever the oldest of them may have been idle
    /// for the idle timeout, ends those that have, and completes after the first
    /// check that ended one.
    pub(crate) async fn first_stalled(&self) {
        let idle_ns = duration_ns(self.idle_timeout);
        loop {
            let now_ns = self.now_ns();
            let mut next_check_ns = now_ns.saturating_add(idle_ns);
            // Every slot leaves the lock in `checked`, with whether it may be
            // stalled, because dropping the last reference to a slot drops its
            // origin body, which takes h2's locks.
            let mut checked = Vec::new();
            lock(&self.bodies).slots.retain(|weak| {
                let Some(slot) = weak.upgrade() else {
                    return false;
                };
                let last_progress_ns = slot.last_progress_ns.load(Ordering::Acquire);
                let watched = last_progress_ns != u64::MAX;
                let deadline_ns = last_progress_ns.saturating_add(idle_ns);
                if deadline_ns > now_ns {
                    next_check_ns = next_check_ns.min(deadline_ns);
                }
                checked.push((slot, deadline_ns <= now_ns));
                watched
            });
            let mut ended = 0;
            for (slot, _) in checked.iter().filter(|(_, may_be_stalled)| *may_be_stalled) {
                match slot.end_if_stalled(now_ns, idle_ns) {
                    Ok(()) => ended += 1,
                    Err(deadline_ns) => next_check_ns = next_check_ns.min(deadline_ns),
                }
            }
            drop(checked);
            if ended > 0 {
                self.ended.inc_by(ended);
                tracing::debug!(
                    bodies = ended,
                    idle_timeout = ?self.idle_timeout,
                    "response bodies without progress; ended them"
                );
                return;
            }
            tokio::time::sleep_until(self.opened + Duration::from_nanos(next_check_ns)).await;
        }
    }

    fn now_ns(&self) -> u64 {
        duration_ns(self.opened.elapsed())
    }
}

impl std::fmt::Debug for ResponseWatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ResponseWatch")
            .field("idle_timeout", &self.idle_timeout)
            .field("registered", &lock(&self.bodies).slots.len())
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// Ends the body if it has yielded no frame for `idle_ns` at `now_ns`: drops the
    /// origin's body and wakes the task polling this body, which then fails with
    /// the idle timeout. Otherwise returns when the body may next be stalled.
    ///
    /// The check repeats under the slot's lock, which `poll_frame` holds while it
    /// records progress, so a body that has just yielded a frame is never ended.
    fn end_if_stalled(&self, now_ns: u64, idle_ns: u64) -> Result<(), u64> {
        let mut state = lock(&self.state);
        let deadline_ns = self
            .last_progress_ns
            .load(Ordering::Acquire)
            .saturating_add(idle_ns);
        if deadline_ns > now_ns {
            return Err(deadline_ns);
        }
        self.last_progress_ns.store(u64::MAX, Ordering::Release);
        let origin = state.origin.take();
        let reservation = std::mem::take(&mut state.reservation);
        let lease = std::mem::take(&mut state.lease);
        let waker = state.waker.take();
        drop(state);
        drop(origin);
        drop(reservation);
        drop(lease);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

/// An origin's response body, passed through frame by frame under a size limit
/// and a [`ResponseWatch`].
pub(crate) struct WatchedBody {
    slot: Arc<Slot>,
    opened: Instant,
    idle_timeout: Duration,
    limit: u64,
    seen: u64,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut state = lock(&this.slot.state);
        let Some(origin) = state.origin.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(BodyError::IdleTimeout(
                this.idle_timeout,
            )))));
        };
        match Pin::new(origin).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.slot
                    .last_progress_ns
                    .store(duration_ns(this.opened.elapsed()), Ordering::Release);
                drop(state);
                if let Err(error) = count_against_limit(&mut this.seen, this.limit, &frame) {
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                state.reservation.give_back();
                state.lease.release();
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                // A finished body is never stalled, however long it is kept, and
                // buffers nothing more.
                this.slot
                    .last_progress_ns
                    .store(u64::MAX, Ordering::Release);
                state.reservation.give_back();
                state.lease.release();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.slot.state)
            .origin
            .as_ref()
            .is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &lock(&self.slot.state).origin {
            Some(origin) => origin.size_hint(),
            None => SizeHint::default(),
        }
    }
}

/// Locks `mutex`. The data behind the watch's and the send queue's locks stays
/// consistent when a holder panics, so a poisoned lock is used as it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
