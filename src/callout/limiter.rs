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

    /// Counts a failed attempt.
    pub fn failed(&self, login: &str, host: &str) {
        let mut state = self.state.lock().expect("limiter lock");
        state.0.add(login, self.limits.window);
        state.1.add(host, self.limits.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_block_a_login_and_a_host_until_the_window_passes() {
        let limiter =
            Limiter::new(Limits { per_login: 3, per_host: 5, window: Duration::from_secs(60) });
        for _ in 0..3 {
            assert!(!limiter.blocked("dev1", "10.0.0.1"));
            limiter.failed("dev1", "10.0.0.1");
        }
        assert!(limiter.blocked("dev1", "10.0.0.9"), "the login is blocked from anywhere");
        assert!(!limiter.blocked("dev2", "10.0.0.9"));
        limiter.failed("dev2", "10.0.0.1");
        limiter.failed("dev3", "10.0.0.1");
        assert!(limiter.blocked("dev4", "10.0.0.1"), "the host is blocked for any login");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!limiter.blocked("dev1", "10.0.0.1"));
    }
}
