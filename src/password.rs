//! argon2id password hashing on a bounded blocking pool.
//!
//! One hash costs ~20 ms of CPU and 19 MiB, so it never runs on the async runtime, and at most
//! `max_concurrent` run at once (by default one per core): a login storm queues instead of
//! exhausting memory or starving the runtime.

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

/// argon2id with OWASP's baseline: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords off the runtime; cheap to clone.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
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
        PasswordHasher { permits: Arc::new(Semaphore::new(max_concurrent.max(1))) }
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
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
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
        let _permit =
            self.permits.acquire().await.map_err(|e| PasswordError::Hashing(e.to_string()))?;
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc).map_err(|_| PasswordError::MalformedHash)?;
            Ok(Some(argon2().verify_password(password.as_bytes(), &parsed).is_ok()))
        })
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))?
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
        self.run(move || {
            let parsed = PasswordHash::new(&phc).map_err(|_| PasswordError::MalformedHash)?;
            Ok(argon2().verify_password(password.as_bytes(), &parsed).is_ok())
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
}
