//! Authorization requests waiting for a handler, served newest first.
//!
//! After a server restart thousands of callout clients log in at once, more than the service
//! can answer within the server's callout time-out (2 s by default). Served in arrival order,
//! each request waits behind every older one; once the backlog holds more than a time-out's
//! worth of work, every answer comes too late, the refused clients retry at once and the
//! backlog never drains (measured before this: 127 of 1,000 clients back after 20 s). Served
//! newest first, the requests answered are the ones with the most time left, so the service
//! admits as many clients per second as it can handle, whatever the backlog; the oldest wait
//! for a quiet moment and are then dropped as expired, or pushed out when the backlog is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// A bounded stack of waiting requests: the newest is taken first, the oldest is pushed out.
#[derive(Debug)]
pub struct Backlog<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Backlog<T> {
    /// An empty backlog holding at most `capacity` (at least one) items.
    pub fn new(capacity: usize) -> Self {
        Backlog { items: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Adds `item`; returns the oldest item if that made the backlog overflow.
    pub fn push(&mut self, item: T) -> Option<T> {
        let pushed_out =
            if self.items.len() >= self.capacity { self.items.pop_front() } else { None };
        self.items.push_back(item);
        pushed_out
    }

    /// Takes the newest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_back()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A [`Backlog`] shared by one receiving loop and many handlers.
#[derive(Debug)]
pub struct Waiting<T> {
    backlog: Mutex<Backlog<T>>,
    ready: Notify,
    closed: AtomicBool,
}

impl<T> Waiting<T> {
    /// An empty, open backlog of at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Waiting {
            backlog: Mutex::new(Backlog::new(capacity)),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues `item` and wakes a handler; true if that pushed out the oldest one.
    pub fn push(&self, item: T) -> bool {
        let pushed_out = self.backlog.lock().expect("backlog lock").push(item).is_some();
        self.ready.notify_one();
        pushed_out
    }

    /// The newest item, waiting for one; `None` once closed and empty.
    pub async fn next(&self) -> Option<T> {
        loop {
            // Registered before looking, so a push between the look and the wait is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = self.backlog.lock().expect("backlog lock").pop() {
                return Some(item);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            notified.await;
        }
    }

    /// No more items come: handlers take what waits, then get `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_is_served_first_and_the_oldest_is_pushed_out() {
        let mut backlog = Backlog::new(3);
        assert!(backlog.is_empty());
        assert_eq!(backlog.push(1), None);
        assert_eq!(backlog.push(2), None);
        assert_eq!(backlog.pop(), Some(2));
        assert_eq!(backlog.push(3), None);
        assert_eq!(backlog.push(4), None);
        assert_eq!(backlog.push(5), Some(1), "full: the oldest goes");
        assert_eq!(backlog.len(), 3);
        assert_eq!([backlog.pop(), backlog.pop(), backlog.pop()], [Some(5), Some(4), Some(3)]);
        assert_eq!(backlog.pop(), None);
        assert_eq!(Backlog::new(0).push("a"), None, "capacity is at least one");
    }

    #[tokio::test]
    async fn handlers_wake_for_pushes_and_drain_what_waits_after_close() {
        let waiting = std::sync::Arc::new(Waiting::new(8));
        let handler = {
            let waiting = std::sync::Arc::clone(&waiting);
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(item) = waiting.next().await {
                    got.push(item);
                }
                got
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.push(1));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.push(2));
        assert!(!waiting.push(3));
        waiting.close();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), handler)
            .await
            .expect("the handler stops after close")
            .unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], 1);
    }
}
