//! Brute-force limits that slow guessing down without letting an attacker lock the owner out
//! (NIST SP 800-63B 5.2.2: rate limiting, not lock-out).
//!
//! A *login* is the canonical key of what was presented (`account/name` for a password login,
//! `token:<id>` for an API token); an *address* is the client's host as the server saw it.
//! Failures are counted in fixed windows of [`Limits::window`]:
//!
//! 1. **Per address**: [`Limits::per_host`] failures from one address refuse every further
//!    attempt from it, for any login.
//! 2. **Per (login, address)**: [`Limits::per_login`] failures for one login from one address
//!    refuse further attempts at that login *from that address only*. An attacker's address
//!    therefore never shuts out the owner's address: that is the owner's way in.
//! 3. **Per login, from everywhere**: past `per_login` × [`GLOBAL_FACTOR`] failures (a
//!    distributed attack), addresses the login has not succeeded from within
//!    [`KNOWN_ADDRESS_TTL`] are slowed to [`THROTTLED_ALLOWANCE`] attempt per window; addresses
//!    it has succeeded from keep rule 2's allowance. No rule ever refuses a login everywhere.
//!
//! A refused attempt checks no secret at all: neither the verified-password cache nor argon2
//! ([`Limiter::allows`] is asked before either). An attempt that hashes is charged (as a
//! failure, provisionally) when its turn to hash comes ([`Limiter::reserve`]), so parallel
//! guesses from one address stop at the limit; a success or an expired request gives the
//! charge back. An API token hashes nothing slow and cannot be guessed: it is charged only
//! when wrong. A success also clears its (login, address) count, so the owner's own typos do
//! not add up.
//!
//! State is in memory and per process: a restart forgets it (attackers gain one window).
//! Instances sharing the load tell each other every charged failure and every success over
//! NATS ([`Limiter::share`], [`super::shared_limits`]) and apply the others' with
//! [`Limiter::apply`], so the limits hold across instances as if one saw every attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Limits; a limit of 0 switches that check off.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per (login, address) per window.
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

/// A login's failures from all addresses, in multiples of `per_login`, past which unknown
/// addresses are throttled (rule 3).
pub const GLOBAL_FACTOR: u32 = 20;
/// Attempts per window for a login under attack from an address it never succeeded from.
pub const THROTTLED_ALLOWANCE: u32 = 1;
/// How long a success marks an address as the login's own.
pub const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most keys tracked per kind; beyond that the oldest windows are dropped.
const MAX_KEYS: usize = 100_000;

/// Fixed-window failure counters by key.
#[derive(Debug, Default)]
struct Windows(HashMap<String, (Instant, u32)>);

impl Windows {
    fn count(&self, key: &str, window: Duration) -> u32 {
        self.0.get(key).filter(|(start, _)| start.elapsed() < window).map_or(0, |(_, n)| *n)
    }

    fn add(&mut self, key: &str, window: Duration) {
        bound(&mut self.0, |(start, _)| start.elapsed() < window);
        let entry = self.0.entry(key.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    fn take_back(&mut self, key: &str) {
        if let Some((_, n)) = self.0.get_mut(key) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Keeps `map` under [`MAX_KEYS`]: drops dead entries, and all if every one is alive (rather
/// than grow without bound).
fn bound<V>(map: &mut HashMap<String, V>, alive: impl Fn(&V) -> bool) {
    if map.len() >= MAX_KEYS {
        map.retain(|_, v| alive(v));
        if map.len() >= MAX_KEYS {
            map.clear();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    hosts: Windows,
    logins: Windows,
    pairs: Windows,
    /// (login, address) → last success.
    known: HashMap<String, Instant>,
}

/// An attempt charged as a failure until [`Limiter::succeeded`] or [`Limiter::released`].
#[derive(Debug)]
#[must_use = "an attempt is resolved with succeeded, failed or released"]
pub struct Reservation {
    login: String,
    host: String,
}

/// One outcome another instance should count: what [`Limiter::share`] hands out and
/// [`Limiter::apply`] takes in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The login's canonical key.
    pub login: String,
    /// The client's address.
    pub host: String,
    /// A charged failure (`true`) or a success (`false`).
    pub failed: bool,
}

/// How many outcomes wait to be sent at most; past that they are dropped (and counted only
/// here) rather than ever slowing a login down.
pub const SHARE_BACKLOG: usize = 4096;

/// Failure counters; see the module docs for the rules.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: Limits,
    state: Mutex<State>,
    /// Where outcomes go for the other instances, once [`Limiter::share`] was called.
    outbox: Mutex<Option<mpsc::Sender<Outcome>>>,
}

impl AsRef<Limiter> for Limiter {
    fn as_ref(&self) -> &Limiter {
        self
    }
}

fn pair(login: &str, host: &str) -> String {
    format!("{login}\u{0}{host}")
}

impl Limiter {
    /// A limiter with `limits`.
    pub fn new(limits: Limits) -> Self {
        Limiter { limits, state: Mutex::default(), outbox: Mutex::default() }
    }

    /// From now on, every charged failure and every success is also sent to the returned
    /// receiver (at most [`SHARE_BACKLOG`] waiting; never blocks a login).
    pub fn share(&self) -> mpsc::Receiver<Outcome> {
        let (tx, rx) = mpsc::channel(SHARE_BACKLOG);
        *self.outbox.lock().expect("limiter outbox lock") = Some(tx);
        rx
    }

    fn tell(&self, login: &str, host: &str, failed: bool) {
        if let Some(tx) = self.outbox.lock().expect("limiter outbox lock").as_ref() {
            let outcome = Outcome { login: login.to_string(), host: host.to_string(), failed };
            if tx.try_send(outcome).is_err() {
                tracing::debug!("limiter outcome not shared: backlog full or sharing stopped");
            }
        }
    }

    /// Counts an outcome another instance saw: a failure is charged here as if it happened
    /// here; a success clears the (login, address) count and marks the address known.
    pub fn apply(&self, outcome: &Outcome) {
        let mut state = self.state.lock().expect("limiter lock");
        if outcome.failed {
            let window = self.limits.window;
            state.hosts.add(&outcome.host, window);
            state.logins.add(&outcome.login, window);
            state.pairs.add(&pair(&outcome.login, &outcome.host), window);
        } else {
            Self::known_locked(&mut state, &outcome.login, &outcome.host);
        }
    }

    /// Failures counted for `login` from `host` in the current window.
    pub fn failures(&self, login: &str, host: &str) -> u32 {
        let state = self.state.lock().expect("limiter lock");
        state.pairs.count(&pair(login, host), self.limits.window)
    }

    fn allows_locked(&self, state: &State, login: &str, host: &str) -> bool {
        let l = self.limits;
        if l.per_host > 0 && state.hosts.count(host, l.window) >= l.per_host {
            return false;
        }
        if l.per_login == 0 {
            return true;
        }
        let key = pair(login, host);
        let under_attack =
            state.logins.count(login, l.window) >= l.per_login.saturating_mul(GLOBAL_FACTOR);
        let known = state.known.get(&key).is_some_and(|at| at.elapsed() < KNOWN_ADDRESS_TTL);
        let allowance = if under_attack && !known { THROTTLED_ALLOWANCE } else { l.per_login };
        state.pairs.count(&key, l.window) < allowance
    }

    /// Whether an attempt at `login` from `host` may check a secret now (nothing charged).
    pub fn allows(&self, login: &str, host: &str) -> bool {
        let state = self.state.lock().expect("limiter lock");
        self.allows_locked(&state, login, host)
    }

    /// Charges an attempt (as a failure until resolved), or `None` if it is over a limit.
    pub fn reserve(&self, login: &str, host: &str) -> Option<Reservation> {
        let mut state = self.state.lock().expect("limiter lock");
        if !self.allows_locked(&state, login, host) {
            return None;
        }
        let window = self.limits.window;
        state.hosts.add(host, window);
        state.logins.add(login, window);
        state.pairs.add(&pair(login, host), window);
        Some(Reservation { login: login.to_string(), host: host.to_string() })
    }

    /// The attempt failed: its charge stays (and is told to the other instances).
    pub fn failed(&self, reservation: Reservation) {
        self.tell(&reservation.login, &reservation.host, true);
    }

    /// The attempt was never decided (expired before hashing): its charge is taken back.
    pub fn released(&self, reservation: Reservation) {
        let mut state = self.state.lock().expect("limiter lock");
        let Reservation { login, host } = reservation;
        state.hosts.take_back(&host);
        state.logins.take_back(&login);
        state.pairs.take_back(&pair(&login, &host));
    }

    /// The attempt succeeded: its charge is taken back, the (login, address) count cleared,
    /// and the address remembered as the login's own.
    pub fn succeeded(&self, reservation: Reservation) {
        let mut state = self.state.lock().expect("limiter lock");
        let Reservation { login, host } = reservation;
        state.hosts.take_back(&host);
        state.logins.take_back(&login);
        let news = Self::known_locked(&mut state, &login, &host);
        drop(state);
        if news {
            self.tell(&login, &host, false);
        }
    }

    /// A success that was never charged (the cache vouched for the secret).
    pub fn succeeded_uncharged(&self, login: &str, host: &str) {
        let mut state = self.state.lock().expect("limiter lock");
        let news = Self::known_locked(&mut state, login, host);
        drop(state);
        if news {
            self.tell(login, host, false);
        }
    }

    /// Clears the pair's failures and marks the address known. Returns whether the others
    /// need to hear of it: there were failures, or the address was not known recently (so a
    /// reconnect storm of known logins sends nothing).
    fn known_locked(state: &mut State, login: &str, host: &str) -> bool {
        let key = pair(login, host);
        let had_failures = state.pairs.0.remove(&key).is_some();
        bound(&mut state.known, |at| at.elapsed() < KNOWN_ADDRESS_TTL);
        let previous = state.known.insert(key, Instant::now());
        had_failures || previous.is_none_or(|at| at.elapsed() >= KNOWN_ADDRESS_TTL / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "10.0.0.1";
    const ATTACKER: &str = "10.6.6.6";

    fn limiter() -> Limiter {
        Limiter::new(Limits { per_login: 3, per_host: 5, window: Duration::from_secs(60) })
    }

    fn fail(limiter: &Limiter, login: &str, host: &str) -> bool {
        limiter.reserve(login, host).map(|r| limiter.failed(r)).is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_from_one_address_never_shut_out_another() {
        let limiter = limiter();
        for _ in 0..3 {
            assert!(fail(&limiter, "acme/dev1", ATTACKER));
        }
        assert!(!limiter.allows("acme/dev1", ATTACKER), "the attacker's address is slowed");
        assert!(limiter.allows("acme/dev1", OWNER), "the owner's address is not");
        let owner = limiter.reserve("acme/dev1", OWNER).expect("the owner may try");
        limiter.succeeded(owner);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.allows("acme/dev1", ATTACKER), "the window passed");
    }

    #[tokio::test(start_paused = true)]
    async fn charges_are_taken_when_the_turn_to_hash_comes_and_given_back_on_success() {
        let limiter = limiter();
        let held: Vec<_> = (0..3).map(|_| limiter.reserve("acme/dev1", OWNER).unwrap()).collect();
        assert!(limiter.reserve("acme/dev1", OWNER).is_none(), "three in flight fill the limit");
        let mut held = held.into_iter();
        limiter.released(held.next().unwrap());
        assert!(limiter.allows("acme/dev1", OWNER), "an expired attempt is not a failure");
        limiter.succeeded(held.next().unwrap());
        limiter.failed(held.next().unwrap());
        assert!(fail(&limiter, "acme/dev1", OWNER), "a success cleared the pair's count");
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_over_its_limit_is_refused_for_every_login() {
        let limiter = limiter();
        for i in 0..5 {
            assert!(fail(&limiter, &format!("acme/u{i}"), ATTACKER));
        }
        assert!(!limiter.allows("acme/someone-else", ATTACKER));
        assert!(limiter.reserve("acme/someone-else", ATTACKER).is_none());
        assert!(limiter.allows("acme/someone-else", OWNER));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.allows("acme/someone-else", ATTACKER));
    }

    #[tokio::test(start_paused = true)]
    async fn a_distributed_attack_slows_new_addresses_but_not_the_owners_known_one() {
        let limiter = limiter();
        // The owner logged in earlier from its address.
        limiter.succeeded(limiter.reserve("acme/dev1", OWNER).unwrap());
        // 3 × 20 failures from 20 addresses: the login is under attack.
        for a in 0..20 {
            for _ in 0..3 {
                assert!(fail(&limiter, "acme/dev1", &format!("10.9.0.{a}")));
            }
        }
        assert!(limiter.allows("acme/dev1", OWNER), "a known address keeps its allowance");
        for _ in 0..2 {
            assert!(fail(&limiter, "acme/dev1", OWNER));
        }
        assert!(limiter.allows("acme/dev1", OWNER));
        // A new address gets one attempt per window: slowed, not locked out.
        assert!(fail(&limiter, "acme/dev1", "10.1.1.1"));
        assert!(!limiter.allows("acme/dev1", "10.1.1.1"));
        assert!(limiter.allows("acme/dev1", "10.1.1.2"), "every new address still gets a try");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.allows("acme/dev1", "10.1.1.1"));
    }

    #[tokio::test(start_paused = true)]
    async fn limits_of_zero_switch_checks_off() {
        let limiter =
            Limiter::new(Limits { per_login: 0, per_host: 0, window: Duration::from_secs(60) });
        for _ in 0..100 {
            assert!(fail(&limiter, "acme/dev1", ATTACKER));
        }
        assert!(limiter.allows("acme/dev1", ATTACKER));
    }
}
