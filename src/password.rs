//! argon2id password hashing on a bounded blocking pool.
//!
//! One hash costs ~20 ms of CPU and 19 MiB, so it never runs on the async runtime, and at most
//! `max_concurrent` run at once (by default one per core): a login storm queues instead of
//! exhausting memory or starving the runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (argon2 would take more, but a megabyte "password" is an attack).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash is not a PHC string argon2 can read.
    #[error("stored password hash is malformed")]
    MalformedHash,
    /// The hashing task failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// argon2id cost of new hashes (verification reads the cost from the stored hash).
#[derive(Clone, Copy, Debug)]
struct Cost {
    memory_kib: u32,
    passes: u32,
}

/// OWASP's baseline: 19 MiB, 2 passes, 1 lane.
const BASELINE: Cost = Cost { memory_kib: 19 * 1024, passes: 2 };

fn argon2(cost: Cost) -> Argon2<'static> {
    let params =
        Params::new(cost.memory_kib, cost.passes, 1, None).expect("argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// What [`PasswordHasher::verify_gated`] came to.
#[derive(Debug)]
pub enum Gated<G> {
    /// The gate let it through and argon2 ran: whether the password matched, and what the
    /// gate returned.
    Checked(bool, G),
    /// The turn to hash came after the deadline; neither the gate nor argon2 ran.
    Expired,
    /// The gate said no; argon2 did not run.
    Refused,
}

/// Hashes and verifies passwords off the runtime; cheap to clone.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    cost: Cost,
    /// Verifications run so far (argon2 calls, not hashes of new passwords).
    verified: Arc<AtomicU64>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        PasswordHasher::new(cores)
    }
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes at a time.
    pub fn new(max_concurrent: usize) -> Self {
        PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            cost: BASELINE,
            verified: Arc::default(),
        }
    }

    /// A hasher making cheap hashes (256 KiB, one pass), so unit tests that create many
    /// passwords stay fast. Verification still runs argon2 on the stored hash's own cost.
    #[cfg(test)]
    pub(crate) fn cheap(max_concurrent: usize) -> Self {
        PasswordHasher { cost: Cost { memory_kib: 256, passes: 1 }, ..Self::new(max_concurrent) }
    }

    /// How many verifications have run argon2 so far (tests prove a secret was not checked).
    pub fn verifications(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit =
            self.permits.acquire().await.map_err(|e| PasswordError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| PasswordError::Hashing(e.to_string()))?
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
    ///
    /// # Errors
    /// [`PasswordError::Hashing`] if the blocking task fails.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        let cost = self.cost;
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2(cost)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hashing(e.to_string()))
        })
        .await
    }

    /// As [`PasswordHasher::verify`], unless the turn to hash comes after `deadline`: then
    /// `Ok(None)` and nothing is hashed (the caller has stopped waiting).
    ///
    /// # Errors
    /// [`PasswordError::MalformedHash`] for a stored hash argon2 cannot read.
    pub async fn verify_by(
        &self,
        password: Zeroizing<String>,
        phc: String,
        deadline: tokio::time::Instant,
    ) -> Result<Option<bool>, PasswordError> {
        match self.verify_gated(password, phc, deadline, || Some(())).await? {
            Gated::Checked(ok, ()) => Ok(Some(ok)),
            Gated::Expired | Gated::Refused => Ok(None),
        }
    }

    /// As [`PasswordHasher::verify_by`], and `gate` is asked once the turn to hash has come
    /// (a hashing slot is held, the deadline not passed): `None` refuses without hashing. The
    /// brute-force limiter charges an attempt there, so parallel guesses queued behind the
    /// pool are counted as they reach it, not all let through on a stale count.
    ///
    /// # Errors
    /// [`PasswordError::MalformedHash`] for a stored hash argon2 cannot read.
    pub async fn verify_gated<G>(
        &self,
        password: Zeroizing<String>,
        phc: String,
        deadline: tokio::time::Instant,
        gate: impl FnOnce() -> Option<G>,
    ) -> Result<Gated<G>, PasswordError> {
        let _permit =
            self.permits.acquire().await.map_err(|e| PasswordError::Hashing(e.to_string()))?;
        if tokio::time::Instant::now() >= deadline {
            return Ok(Gated::Expired);
        }
        let Some(admitted) = gate() else { return Ok(Gated::Refused) };
        self.verified.fetch_add(1, Ordering::Relaxed);
        let cost = self.cost;
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc).map_err(|_| PasswordError::MalformedHash)?;
            Ok(argon2(cost).verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))??;
        Ok(Gated::Checked(ok, admitted))
    }

    /// Whether `password` matches the PHC string `phc` (parameters are read from it).
    ///
    /// # Errors
    /// [`PasswordError::MalformedHash`] for a stored hash argon2 cannot read.
    pub async fn verify(
        &self,
        password: Zeroizing<String>,
        phc: String,
    ) -> Result<bool, PasswordError> {
        self.verified.fetch_add(1, Ordering::Relaxed);
        let cost = self.cost;
        self.run(move || {
            let parsed = PasswordHash::new(&phc).map_err(|_| PasswordError::MalformedHash)?;
            Ok(argon2(cost).verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new(2);
        let phc = hasher.hash(Zeroizing::new("correct horse".into())).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(hasher.verify(Zeroizing::new("correct horse".into()), phc.clone()).await.unwrap());
        assert!(!hasher.verify(Zeroizing::new("wrong horse".into()), phc).await.unwrap());
        let err = hasher.verify(Zeroizing::new("x".into()), "plain".into()).await.unwrap_err();
        assert!(matches!(err, PasswordError::MalformedHash));
    }

    #[tokio::test]
    async fn a_closed_gate_or_a_passed_deadline_hashes_nothing() {
        let hasher = PasswordHasher::cheap(1);
        let phc = hasher.hash(Zeroizing::new("pw".into())).await.unwrap();
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let pw = || Zeroizing::new("pw".to_string());
        let refused = hasher.verify_gated(pw(), phc.clone(), far, || None::<()>).await.unwrap();
        assert!(matches!(refused, Gated::Refused));
        let past = tokio::time::Instant::now();
        let expired = hasher.verify_gated(pw(), phc.clone(), past, || Some(())).await.unwrap();
        assert!(matches!(expired, Gated::Expired));
        assert_eq!(hasher.verifications(), 0);
        let ok = hasher.verify_gated(pw(), phc, far, || Some(7)).await.unwrap();
        assert!(matches!(ok, Gated::Checked(true, 7)));
        assert_eq!(hasher.verifications(), 1);
    }
}
