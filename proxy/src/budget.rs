//! Memory that responses hold on their way to slow clients.
//!
//! Between the origin and the client, a response buffers what the origin has sent
//! and the client has not read yet: up to one HTTP/2 stream window from an HTTP/2
//! origin, up to hyper's read buffer from an HTTP/1.1 origin. A client that reads
//! many streams slowly, or not at all, would make swg keep that much for each of
//! them. So before its head is passed on, each response reserves its largest
//! possible buffer (or its length, when smaller) from the budget of its client's
//! address and from the budget of the process. It gives the bytes back when its
//! origin body ends or is dropped. A response that does not fit in one of the
//! budgets is dropped, which resets its HTTP/2 stream, and the client gets 503.
//! Requests that are not idempotent reserve the largest buffer before they are
//! sent instead, so that the origin never processes a request whose response
//! swg then refuses, and give back the excess when the head arrives.
//!
//! The reservation is the worst case, not what is buffered at the moment, so a
//! budget counts responses in flight at their largest rather than bytes in memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;

use crate::upstream::BufferBudget;

/// A limit on the bytes that responses may reserve together.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    reserved: AtomicU64,
    /// Follows `reserved`, for the process's budget only.
    gauge: Option<IntGauge>,
}

impl Budget {
    /// Returns a budget of `limit` bytes, reported in `gauge` when given.
    pub(crate) fn new(limit: u64, gauge: Option<IntGauge>) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            reserved: AtomicU64::new(0),
            gauge,
        })
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` unless the reservations would then exceed the limit.
    fn take(&self, bytes: u64) -> bool {
        let reserved = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                current
                    .checked_add(bytes)
                    .filter(|total| *total <= self.limit)
            })
            .is_ok();
        if reserved {
            if let Some(gauge) = &self.gauge {
                gauge.add(gauge_value(bytes));
            }
        }
        reserved
    }

    fn give_back(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(gauge) = &self.gauge {
            gauge.sub(gauge_value(bytes));
        }
    }
}

/// Reserves `bytes` from the client's budget and the process's budget, both or
/// neither. A reservation of zero bytes takes nothing and always succeeds.
pub(crate) fn reserve(
    client: &Arc<Budget>,
    process: &Arc<Budget>,
    bytes: u64,
) -> Result<Reservation, BufferBudget> {
    if bytes == 0 {
        return Ok(Reservation {
            reserved_bytes: None,
        });
    }
    if !client.take(bytes) {
        return Err(BufferBudget::Client);
    }
    if !process.take(bytes) {
        client.give_back(bytes);
        return Err(BufferBudget::Process);
    }
    Ok(Reservation {
        reserved_bytes: Some(ReservedBytes {
            bytes,
            client: client.clone(),
            process: process.clone(),
        }),
    })
}

/// Bytes reserved for one response, given back when dropped or by `give_back`.
/// The default reservation is empty.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    reserved_bytes: Option<ReservedBytes>,
}

impl Reservation {
    /// Gives the bytes back now.
    pub(crate) fn give_back(&mut self) {
        self.reserved_bytes = None;
    }

    /// Gives back what is reserved above `bytes`.
    pub(crate) fn shrink_to(&mut self, bytes: u64) {
        let Some(reserved_bytes) = &mut self.reserved_bytes else {
            return;
        };
        if bytes == 0 {
            self.reserved_bytes = None;
        } else if bytes < reserved_bytes.bytes {
            let excess = reserved_bytes.bytes - bytes;
            reserved_bytes.client.give_back(excess);
            reserved_bytes.process.give_back(excess);
            reserved_bytes.bytes = bytes;
        }
    }
}

#[derive(Debug)]
struct ReservedBytes {
    bytes: u64,
    client: Arc<Budget>,
    process: Arc<Budget>,
}

impl Drop for ReservedBytes {
    fn drop(&mut self) {
        self.client.give_back(self.bytes);
        self.process.give_back(self.bytes);
    }
}

/// Bytes reserved from a client's budget and the process's budget that follow
/// what they account for, growing and shrinking with it, given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    client: Arc<Budget>,
    process: Arc<Budget>,
    bytes: u64,
}

impl Charge {
    /// Returns an empty charge on `client` and `process`.
    pub(crate) fn new(client: Arc<Budget>, process: Arc<Budget>) -> Charge {
        Charge {
            client,
            process,
            bytes: 0,
        }
    }

    /// Bytes reserved now.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows the charge to `bytes` in both budgets, or changes nothing and returns
    /// false when one of them cannot take the growth. A charge already at `bytes`
    /// or above is left as it is.
    pub(crate) fn grow_to(&mut self, bytes: u64) -> bool {
        let Some(growth) = bytes.checked_sub(self.bytes).filter(|growth| *growth > 0) else {
            return true;
        };
        if !self.client.take(growth) {
            return false;
        }
        if !self.process.take(growth) {
            self.client.give_back(growth);
            return false;
        }
        self.bytes = bytes;
        true
    }

    /// Gives back what is reserved above `bytes`.
    pub(crate) fn shrink_to(&mut self, bytes: u64) {
        if let Some(excess) = self.bytes.checked_sub(bytes).filter(|excess| *excess > 0) {
            self.client.give_back(excess);
            self.process.give_back(excess);
            self.bytes = bytes;
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

/// Converts a byte count to a gauge value, saturating at `i64::MAX`.
pub(crate) fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_both_budgets() {
        let gauge = IntGauge::new("reserved", "reserved bytes").unwrap();
        let process = Budget::new(100, Some(gauge.clone()));
        let first = Budget::new(60, None);
        let second = Budget::new(60, None);

        let a = reserve(&first, &process, 50).unwrap();
        assert_eq!(
            reserve(&first, &process, 20).unwrap_err(),
            BufferBudget::Client
        );
        let b = reserve(&second, &process, 40).unwrap();
        assert_eq!(
            reserve(&second, &process, 20).unwrap_err(),
            BufferBudget::Process
        );
        // A refusal by the process's budget gives the client's share back.
        assert_eq!(second.reserved(), 40);
        assert_eq!((process.reserved(), gauge.get()), (90, 90));

        drop(a);
        assert_eq!(
            (first.reserved(), process.reserved(), gauge.get()),
            (0, 40, 40)
        );
        let c = reserve(&second, &process, 20).unwrap();
        drop((b, c));
        assert_eq!(
            (second.reserved(), process.reserved(), gauge.get()),
            (0, 0, 0)
        );
    }

    #[test]
    fn shrinking_gives_back_the_excess() {
        let process = Budget::new(100, None);
        let client = Budget::new(100, None);
        let mut reservation = reserve(&client, &process, 80).unwrap();
        reservation.shrink_to(90);
        assert_eq!((client.reserved(), process.reserved()), (80, 80));
        reservation.shrink_to(30);
        assert_eq!((client.reserved(), process.reserved()), (30, 30));
        reservation.shrink_to(0);
        assert_eq!((client.reserved(), process.reserved()), (0, 0));
        drop(reservation);
        assert_eq!((client.reserved(), process.reserved()), (0, 0));
    }

    #[test]
    fn empty_reservations_always_fit() {
        let process = Budget::new(10, None);
        let client = Budget::new(10, None);
        let _full = reserve(&client, &process, 10).unwrap();
        let empty = reserve(&client, &process, 0).unwrap();
        drop(empty);
        assert_eq!(process.reserved(), 10);
        assert_eq!(
            reserve(&client, &process, u64::MAX).unwrap_err(),
            BufferBudget::Client
        );
    }
}
