//! Brute-force limits: too many failures for one login name, or from one client address,
//! within a window, and further attempts are refused without hashing until the window passes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Limits; a limit of 0 switches that check off.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per login name per window.
    pub per_login: u32,
    /// Failures per client address per window.
    pub per_host: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { per_login: 5, per_host: 50, window: Duration::from_secs(60) }
    }
}

/// Most keys tracked per kind; beyond that the oldest windows are dropped.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
struct Windows(HashMap<String, (Instant, u32)>);

impl Windows {
    fn count(&self, key: &str, window: Duration) -> u32 {
        self.0.get(key).filter(|(start, _)| start.elapsed() < window).map_or(0, |(_, n)| *n)
    }

    fn add(&mut self, key: &str, window: Duration) {
        if self.0.len() >= MAX_KEYS {
            self.0.retain(|_, (start, _)| start.elapsed() < window);
            if self.0.len() >= MAX_KEYS {
                // Still full of live windows: forget them all rather than grow without bound.
                self.0.clear();
            }
        }
        let entry = self.0.entry(key.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// Failure counters by login and by host.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: Limits,
    state: Mutex<(Windows, Windows)>,
}

impl Limiter {
    /// A limiter with `limits`.
    pub fn new(limits: Limits) -> Self {
        Limiter { limits, state: Mutex::default() }
    }

    /// Whether an attempt for `login` from `host` must be refused now.
    pub fn blocked(&self, login: &str, host: &str) -> bool {
        let state = self.state.lock().expect("limiter lock");
        let l = self.limits;
        (l.per_login > 0 && state.0.count(login, l.window) >= l.per_login)
            || (l.per_host > 0 && state.1.count(host, l.window) >= l.per_host)
    }

    /// Reserves an attempt for `login` from `host`: `false` if either is over its limit
    /// (nothing counted). The login's slot is counted as a failure at once, so parallel guesses
    /// at one login stop at its limit; [`Limiter::succeeded`] gives it back, and
    /// [`Limiter::failed`] counts the failure against the host. (The host is charged only for
    /// real failures: many clients behind one address logging in at once are not an attack.)
    pub fn attempt(&self, login: &str, host: &str) -> bool {
        let mut state = self.state.lock().expect("limiter lock");
        let l = self.limits;
        if (l.per_login > 0 && state.0.count(login, l.window) >= l.per_login)
            || (l.per_host > 0 && state.1.count(host, l.window) >= l.per_host)
        {
            return false;
        }
        state.0.add(login, l.window);
        true
    }

    /// Counts a failed attempt against the host (the login was counted by `attempt`).
    pub fn failed(&self, host: &str) {
        let mut state = self.state.lock().expect("limiter lock");
        state.1.add(host, self.limits.window);
    }

    /// Takes back an attempt that succeeded.
    pub fn succeeded(&self, login: &str) {
        let mut state = self.state.lock().expect("limiter lock");
        if let Some((_, n)) = state.0 .0.get_mut(login) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn attempts_are_reserved_before_hashing_and_block_until_the_window_passes() {
        let limiter =
            Limiter::new(Limits { per_login: 3, per_host: 5, window: Duration::from_secs(60) });
        for _ in 0..3 {
            assert!(limiter.attempt("dev1", "10.0.0.1"), "in flight, not yet failed");
        }
        assert!(!limiter.attempt("dev1", "10.0.0.9"), "the login is blocked from anywhere");
        assert!(limiter.blocked("dev1", "10.0.0.9"));
        assert!(limiter.attempt("dev2", "10.0.0.9"));
        limiter.succeeded("dev2");
        assert!(!limiter.blocked("dev2", "10.0.0.9"), "a success gives the slot back");
        for _ in 0..5 {
            limiter.failed("10.0.0.1");
        }
        assert!(!limiter.attempt("dev4", "10.0.0.1"), "the host is blocked for any login");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.attempt("dev1", "10.0.0.1"));
    }
}
