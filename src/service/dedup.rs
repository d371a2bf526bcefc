//! Answers a retried change once: requests carrying the same `Authd-Request-Id` get the
//! first attempt's reply instead of being applied twice.
//!
//! Replies can be lost on the way back (nats-server drops replies in flight from AUTH's
//! exports when AUTH's JWT is updated, see [`crate::api_gate`]; a client can also time out).
//! The CLI and [`crate::client::AdminClient`] retry with the same id; this cache makes that
//! safe for changes. Entries live for [`TTL`]; at most [`MAX_ENTRIES`] are kept.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::reply::Reply;

/// The request header naming a request across retries.
pub const REQUEST_ID_HEADER: &str = "Authd-Request-Id";
/// How long a reply is kept for retries.
pub const TTL: Duration = Duration::from_secs(120);
/// Most replies kept; older ones are dropped first when full.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest accepted request id.
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug)]
struct Entry {
    created: Instant,
    /// `None` while the first attempt is still being handled.
    reply: watch::Receiver<Option<Reply>>,
}

/// The cache; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl Dedup {
    /// Runs `handle` for a new `id`, or returns the reply of the attempt that ran it first
    /// (waiting for it if it is still running). Without an id, just runs `handle`.
    pub async fn run<F, Fut>(&self, id: Option<&str>, handle: F) -> Reply
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Reply>,
    {
        let Some(id) = id.filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN) else {
            return handle().await;
        };
        let existing = {
            let mut entries = self.entries.lock().expect("dedup lock");
            let now = Instant::now();
            entries.retain(|_, e| now.duration_since(e.created) < TTL);
            match entries.get(id) {
                Some(entry) => Err(entry.reply.clone()),
                None => {
                    if entries.len() >= MAX_ENTRIES {
                        if let Some(oldest) =
                            entries.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| k.clone())
                        {
                            entries.remove(&oldest);
                        }
                    }
                    let (tx, rx) = watch::channel(None);
                    entries.insert(id.to_string(), Entry { created: now, reply: rx });
                    Ok(tx)
                }
            }
        };
        match existing {
            Ok(tx) => {
                let reply = handle().await;
                tx.send_replace(Some(reply.clone()));
                reply
            }
            Err(mut rx) => {
                let first = rx.wait_for(Option::is_some).await.map(|r| r.clone());
                match first {
                    Ok(Some(reply)) => reply,
                    // The first attempt was abandoned (shutdown): let this one run.
                    _ => handle().await,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn reply(text: &str) -> Reply {
        Reply { body: bytes::Bytes::from(text.to_string()), error: None }
    }

    #[tokio::test]
    async fn the_same_id_is_applied_once() {
        let dedup = Dedup::default();
        let applied = Arc::new(AtomicUsize::new(0));
        let run = |id: Option<&'static str>, text: &'static str| {
            let (dedup, applied) = (dedup.clone(), applied.clone());
            async move {
                dedup
                    .run(id, || async move {
                        applied.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        reply(text)
                    })
                    .await
            }
        };
        let (a, b) = tokio::join!(run(Some("r1"), "first"), run(Some("r1"), "second"));
        assert_eq!(a, reply("first"));
        assert_eq!(b, reply("first"), "a concurrent retry waits for the first attempt");
        assert_eq!(run(Some("r1"), "third").await, reply("first"));
        assert_eq!(applied.load(Ordering::SeqCst), 1);
        assert_eq!(run(Some("r2"), "other").await, reply("other"));
        assert_eq!(run(None, "plain").await, reply("plain"));
        assert_eq!(run(None, "plain again").await, reply("plain again"));
        assert_eq!(applied.load(Ordering::SeqCst), 4);
    }
}
