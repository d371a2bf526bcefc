//! Keeps management replies and AUTH pushes apart.
//!
//! nats-server rebuilds an account's export map, response mappings included, whenever the
//! account's JWT is updated (`updateAccountClaimsWithRefresh` resets `a.exports`). Replies in
//! flight from that account's exported services are then dropped. The management API is
//! exported from AUTH, and AUTH's JWT changes whenever tenants come and go, so an AUTH push
//! during a request would lose its reply. Requests hold the gate shared from receipt to reply;
//! an AUTH push first waits for a quiet moment on the API (bounded), then holds it exclusively.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::time::Instant;

/// How long the API must be idle before an AUTH push.
pub const QUIET: Duration = Duration::from_millis(100);
/// Longest an AUTH push waits for the API to be idle.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// See the module docs.
#[derive(Debug)]
pub struct ApiGate {
    lock: RwLock<()>,
    last_request: Mutex<Instant>,
}

impl Default for ApiGate {
    fn default() -> Self {
        ApiGate { lock: RwLock::new(()), last_request: Mutex::new(Instant::now() - QUIET) }
    }
}

impl ApiGate {
    /// Held while one request is handled and answered.
    pub async fn request(&self) -> RwLockReadGuard<'_, ()> {
        *self.last_request.lock().expect("gate clock lock") = Instant::now();
        self.lock.read().await
    }

    /// Held while AUTH's JWT is pushed: after the API has been quiet for [`QUIET`] (or
    /// [`MAX_WAIT`] has passed) and no request is being answered.
    pub async fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        let give_up = Instant::now() + MAX_WAIT;
        loop {
            let quiet_at = *self.last_request.lock().expect("gate clock lock") + QUIET;
            let now = Instant::now();
            if now >= quiet_at || now >= give_up {
                break;
            }
            tokio::time::sleep_until(quiet_at.min(give_up)).await;
        }
        self.lock.write().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_push_waits_for_quiet_and_for_requests_to_finish() {
        let gate = std::sync::Arc::new(ApiGate::default());
        let start = Instant::now();
        drop(gate.exclusive().await);
        assert!(start.elapsed() < QUIET, "an idle API does not delay a push");

        let guard = gate.request().await;
        let pusher = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _g = gate.exclusive().await;
                Instant::now()
            }
        });
        tokio::time::sleep(QUIET * 3).await;
        let released = Instant::now();
        drop(guard);
        let pushed_at = pusher.await.unwrap();
        assert!(pushed_at >= released, "the push ran while a request was being answered");

        // A busy API delays a push by at most MAX_WAIT.
        let start = Instant::now();
        let busy = tokio::spawn({
            let gate = gate.clone();
            async move {
                for _ in 0..100 {
                    drop(gate.request().await);
                    tokio::time::sleep(QUIET / 2).await;
                }
            }
        });
        drop(gate.exclusive().await);
        assert!(start.elapsed() <= MAX_WAIT + QUIET);
        busy.abort();
    }
}
