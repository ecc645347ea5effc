//! The bounded queue between the recorders and the writer.
//!
//! A vector behind a mutex, which the writer exchanges for an empty one. Recording
//! an event locks the mutex once and moves the event in. No task is woken, because
//! the writer looks at the queue on a timer. The exchange hands the writer every
//! queued event at once and gives the recorders back the vector of the last batch,
//! with its capacity. So once the queue has seen its usual load, recording moves an
//! event into room that is already allocated.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::event::Event;

/// Events waiting for the writer, at most `capacity` of them.
pub(crate) struct Queue {
    state: Mutex<State>,
    capacity: usize,
}

struct State {
    events: Vec<Event>,
    closed: bool,
}

impl Queue {
    /// Creates an open queue that holds up to `capacity` events.
    pub(crate) fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                events: Vec::new(),
                closed: false,
            }),
            capacity,
        }
    }

    /// Adds `event` and returns true, or drops it and returns false when the queue
    /// is full or closed.
    pub(crate) fn push(&self, event: Event) -> bool {
        let mut state = self.lock();
        if state.closed || state.events.len() >= self.capacity {
            return false;
        }
        state.events.push(event);
        true
    }

    /// Returns the number of queued events.
    pub(crate) fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Moves every queued event into `batch`, which must be empty, and leaves the
    /// queue with `batch`'s former allocation.
    pub(crate) fn take_all(&self, batch: &mut Vec<Event>) {
        debug_assert!(batch.is_empty(), "the writer passes an emptied batch");
        std::mem::swap(&mut self.lock().events, batch);
    }

    /// Refuses every further event; queued ones stay until taken.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a push, a swap or a flag change, which leave
        // the state valid even if a panic interrupted another holder.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, Via};

    fn event(host: &str) -> Event {
        Event::new("acme", Via::Dns, host, Action::Allow)
    }

    #[test]
    fn full_queue_refuses_the_event() {
        let queue = Queue::new(2);
        assert!(queue.push(event("a.example")));
        assert!(queue.push(event("b.example")));

        assert!(!queue.push(event("c.example")));

        let mut batch = Vec::new();
        queue.take_all(&mut batch);
        let hosts: Vec<&str> = batch.iter().map(|e| e.request.as_str()).collect();
        assert_eq!(hosts, ["a.example", "b.example"]);
    }

    #[test]
    fn take_all_empties_the_queue_in_order() {
        let queue = Queue::new(10);
        for host in ["a.example", "b.example", "c.example"] {
            assert!(queue.push(event(host)));
        }
        let mut batch = Vec::with_capacity(8);

        queue.take_all(&mut batch);

        let hosts: Vec<&str> = batch.iter().map(|e| e.request.as_str()).collect();
        assert_eq!(hosts, ["a.example", "b.example", "c.example"]);
        assert_eq!(queue.len(), 0);
        assert!(queue.lock().events.capacity() >= 8);
    }

    #[test]
    fn closed_queue_refuses_events_but_keeps_queued_ones() {
        let queue = Queue::new(10);
        assert!(queue.push(event("a.example")));

        queue.close();

        assert!(!queue.push(event("b.example")));
        assert_eq!(queue.len(), 1);
    }
}
