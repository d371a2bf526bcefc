//! Remembers recently verified passwords, so a reconnect storm does not pay argon2 again.
//!
//! Why it cannot let a changed, disabled or deleted user in:
//! - it is consulted only after the user and account records have been read from the store
//!   and found active, on every login; a disabled or deleted user never gets this far;
//! - an entry is a keyed SHA-256 of (stored PHC hash, presented password): a password change
//!   writes a new PHC string (new salt), so no old entry can match it, and a wrong password
//!   yields a different digest;
//! - the key is random per process and only in memory, so the digests are useless to anyone
//!   who reads them, and nothing survives a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// Most entries kept; the oldest go first.
pub const MAX_ENTRIES: usize = 100_000;

/// See the module docs.
pub struct VerifiedCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        VerifiedCache { key: rand::random(), ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn digest(&self, phc: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update((phc.len() as u64).to_be_bytes());
        hasher.update(phc.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// Whether `password` was verified against `phc` within the TTL.
    pub fn hit(&self, phc: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let digest = self.digest(phc, password);
        let entries = self.entries.lock().expect("cache lock");
        entries.get(&digest).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Records that `password` matched `phc`.
    pub fn insert(&self, phc: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let digest = self.digest(phc, password);
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, at| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(digest, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn hits_only_the_same_password_on_the_same_hash_within_the_ttl() {
        let cache = VerifiedCache::new(Duration::from_secs(60));
        assert!(!cache.hit("$argon2id$salt1$h", "pw"));
        cache.insert("$argon2id$salt1$h", "pw");
        assert!(cache.hit("$argon2id$salt1$h", "pw"));
        assert!(!cache.hit("$argon2id$salt1$h", "pw2"), "another password");
        assert!(!cache.hit("$argon2id$salt2$h", "pw"), "the password was changed (new hash)");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!cache.hit("$argon2id$salt1$h", "pw"), "expired");
        let off = VerifiedCache::new(Duration::ZERO);
        off.insert("h", "pw");
        assert!(!off.hit("h", "pw"));
    }
}
