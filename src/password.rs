//! argon2id password hashing on a fixed pool of worker threads.
//!
//! One hash costs ~20 ms of CPU and 19 MiB, so it never runs on the async runtime, and at most
//! `max_concurrent` run at once (by default one per core): a login storm queues instead of
//! exhausting memory or starving the runtime.
//!
//! Each worker owns its argon2 memory block and reuses it for every hash. Allocating 19 MiB per
//! hash (what `Argon2::verify_password` does) lets glibc raise its mmap threshold and keep the
//! freed blocks in per-thread arenas: a few hundred logins left the process at ~1 GB RSS. With
//! reused blocks the memory is at most `workers × 19 MiB` whatever the load, and after
//! [`IDLE_RELEASE`] without a hash the blocks are freed: a login burst leaves nothing behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, Semaphore};
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

/// Blocks (1 KiB each) a worker keeps between hashes: enough for the baseline. A stored hash
/// asking for more gets a one-off buffer, so memory stays bounded by our own parameters.
const RETAINED_BLOCKS: usize = BASELINE.memory_kib as usize;

/// How long the workers' blocks are kept without a hash before they are freed.
pub const IDLE_RELEASE: Duration = Duration::from_secs(10);

/// Longest decoded salt read from a PHC string (as argon2's own verifier allows).
const MAX_SALT_BYTES: usize = 64;

fn params(cost: Cost) -> Params {
    Params::new(cost.memory_kib, cost.passes, 1, None).expect("argon2 parameters are valid")
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

/// One hash's argon2 memory, allocated on first use and reused until the pool is idle.
#[derive(Default)]
struct Memory {
    blocks: Vec<Block>,
}

impl Memory {
    /// Runs `f` over `count` blocks: the worker's own when they are enough, else a one-off.
    fn with_blocks<R>(&mut self, count: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
        if count <= RETAINED_BLOCKS {
            if self.blocks.len() < count {
                self.blocks.resize(count, Block::default());
            }
            f(&mut self.blocks[..count])
        } else {
            let mut once = vec![Block::default(); count];
            f(&mut once)
        }
    }
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// The worker threads and the queue feeding them. Dropping it (with the last
/// [`PasswordHasher`] clone) closes the queue: each worker finishes its current hash and exits.
struct Pool {
    jobs: mpsc::Sender<Job>,
    /// Memory blocks between jobs (read by the unit tests).
    idle: Arc<Mutex<Vec<Memory>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        f.debug_struct("Pool").field("idle_buffers", &idle).finish_non_exhaustive()
    }
}

impl Pool {
    fn new(workers: usize, release_after: Duration) -> Pool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let idle = Arc::new(Mutex::new(Vec::new()));
        for i in 0..workers {
            let (queue, idle) = (Arc::clone(&queue), Arc::clone(&idle));
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&queue, &idle, release_after))
                .expect("spawn an argon2 worker thread");
        }
        Pool { jobs, idle }
    }

    /// Runs `work` on a worker; the caller holds a permit, so a worker is (about to be) free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(work(memory));
        });
        self.jobs.send(job).map_err(|_| PasswordError::Hashing("worker pool stopped".into()))?;
        rx.await.map_err(|_| PasswordError::Hashing("worker failed".into()))?
    }
}

/// Takes jobs until the queue closes. Memory blocks live in `idle` between jobs (at most one
/// per worker exists, since each job holds one); the worker waiting on the queue frees them
/// all when no job came for `release_after` ([`IDLE_RELEASE`]).
fn worker(queue: &Mutex<mpsc::Receiver<Job>>, idle: &Mutex<Vec<Memory>>, release_after: Duration) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv_timeout(release_after),
            Err(_) => return,
        };
        let job = match job {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(mut idle) = idle.lock() {
                    idle.clear();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut memory = idle.lock().ok().and_then(|mut idle| idle.pop()).unwrap_or_default();
        // A panicking hash fails its own request (its reply is dropped), not the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
        if let Ok(mut idle) = idle.lock() {
            idle.push(memory);
        }
    }
}

/// A new PHC string (`$argon2id$v=19$m=..,t=..,p=1$salt$hash`), as `Argon2::hash_password`
/// writes it, with `memory` as argon2's working memory.
fn hash_with(memory: &mut Memory, cost: Cost, password: &[u8]) -> Result<String, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Hashing(e.to_string());
    let params = params(cost);
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; MAX_SALT_BYTES];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| failed(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    memory
        .with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password, salt_bytes, &mut out, blocks)
        })
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `phc`, with the algorithm, version, cost and salt read from it
/// (any argon2 PHC string argon2's own verifier accepts), compared in constant time.
fn verify_with(memory: &mut Memory, password: &[u8], phc: &str) -> Result<bool, PasswordError> {
    let malformed = |_| PasswordError::MalformedHash;
    let parsed = PasswordHash::new(phc).map_err(malformed)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|_| PasswordError::MalformedHash)?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(malformed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(PasswordError::MalformedHash);
    };
    let mut salt_buf = [0u8; MAX_SALT_BYTES];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(malformed)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    memory
        .with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password, salt_bytes, &mut out, blocks)
        })
        .map_err(|_| PasswordError::MalformedHash)?;
    let computed = Output::new(&out).map_err(malformed)?;
    // `Output`'s equality is constant-time (subtle).
    Ok(computed == expected)
}

/// Hashes and verifies passwords off the runtime; cheap to clone.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    pool: Arc<Pool>,
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
    /// At most `max_concurrent` hashes at a time, on as many worker threads (19 MiB each
    /// while hashes come, none after [`IDLE_RELEASE`] without one).
    pub fn new(max_concurrent: usize) -> Self {
        Self::releasing_after(max_concurrent, IDLE_RELEASE)
    }

    fn releasing_after(max_concurrent: usize, release_after: Duration) -> Self {
        let workers = max_concurrent.max(1);
        PasswordHasher {
            permits: Arc::new(Semaphore::new(workers)),
            pool: Arc::new(Pool::new(workers, release_after)),
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
        work: impl FnOnce(&mut Memory) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit =
            self.permits.acquire().await.map_err(|e| PasswordError::Hashing(e.to_string()))?;
        self.pool.run(work).await
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
    ///
    /// # Errors
    /// [`PasswordError::Hashing`] if the worker fails.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        let cost = self.cost;
        self.run(move |memory| hash_with(memory, cost, password.as_bytes())).await
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
        // The permit is held: a worker is free for this job.
        let ok =
            self.pool.run(move |memory| verify_with(memory, password.as_bytes(), &phc)).await?;
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
        self.run(move |memory| verify_with(memory, password.as_bytes(), &phc)).await
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

    #[tokio::test]
    async fn hashes_stay_compatible_with_argon2s_own_phc_strings() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::cheap(1);
        // Ours, checked by argon2's verifier.
        let ours = hasher.hash(Zeroizing::new("pw-ours".into())).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw-ours", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"pw-other", &parsed).is_err());
        // argon2's (the format stored so far, and other variants/costs), checked by ours.
        for (algorithm, cost) in [
            (Algorithm::Argon2id, BASELINE),
            (Algorithm::Argon2id, Cost { memory_kib: 64, passes: 3 }),
            (Algorithm::Argon2i, Cost { memory_kib: 128, passes: 1 }),
        ] {
            let salt = SaltString::generate(&mut OsRng);
            let theirs = Argon2::new(algorithm, Version::V0x13, params(cost))
                .hash_password(b"pw-theirs", &salt)
                .unwrap()
                .to_string();
            let pw = |s: &str| Zeroizing::new(s.to_string());
            assert!(hasher.verify(pw("pw-theirs"), theirs.clone()).await.unwrap(), "{theirs}");
            assert!(!hasher.verify(pw("pw-theirS"), theirs).await.unwrap());
        }
        let truncated = ours.rsplit_once('$').unwrap().0.to_string();
        let err = hasher.verify(Zeroizing::new("pw-ours".into()), truncated).await.unwrap_err();
        assert!(matches!(err, PasswordError::MalformedHash));
    }

    #[tokio::test]
    async fn idle_workers_free_their_memory_and_hash_again_after() {
        let hasher = PasswordHasher::releasing_after(2, Duration::from_secs(1));
        let held = |h: &PasswordHasher| {
            let idle = h.pool.idle.lock().unwrap();
            (idle.len(), idle.iter().map(|m| m.blocks.len()).sum::<usize>())
        };
        let phc = hasher.hash(Zeroizing::new("first password".into())).await.unwrap();
        // The answer goes out before the worker puts the memory back.
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while held(&hasher) != (1, RETAINED_BLOCKS) {
            assert!(std::time::Instant::now() < deadline, "not kept: {:?}", held(&hasher));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while held(&hasher).0 > 0 {
            assert!(std::time::Instant::now() < deadline, "never freed: {:?}", held(&hasher));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(hasher.verify(Zeroizing::new("first password".into()), phc).await.unwrap());
    }

    fn vm_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Memory after 1,000 verifications at the default cost, 64 at a time (slow in debug):
    /// `cargo test --release --lib password::tests::rss -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "slow: 1,000 argon2id verifications; prints VmRSS"]
    async fn rss_stays_flat_over_a_thousand_verifications() {
        let hasher = PasswordHasher::default();
        let phc = hasher.hash(Zeroizing::new("correct horse".into())).await.unwrap();
        // AUTHD_RSS_BASELINE=1: the previous way (argon2's own verify_password, allocating
        // per call, on spawn_blocking under the same permits), for a before/after.
        let baseline = std::env::var_os("AUTHD_RSS_BASELINE").is_some();
        let before = vm_rss_kib();
        let mut peak = 0;
        for round in 0..(1000 / 64 + 1) {
            let batch = (0..64.min(1000 - round * 64)).map(|i| {
                let pw = if i % 2 == 0 { "correct horse" } else { "wrong horse" };
                let (hasher, phc) = (hasher.clone(), phc.clone());
                async move {
                    if !baseline {
                        return hasher.verify(Zeroizing::new(pw.into()), phc).await;
                    }
                    use argon2::password_hash::PasswordVerifier as _;
                    let _permit = hasher.permits.acquire().await.unwrap();
                    hasher.verified.fetch_add(1, Ordering::Relaxed);
                    tokio::task::spawn_blocking(move || {
                        let parsed = PasswordHash::new(&phc).unwrap();
                        Ok(Argon2::default().verify_password(pw.as_bytes(), &parsed).is_ok())
                    })
                    .await
                    .unwrap()
                }
            });
            for (i, ok) in futures::future::join_all(batch).await.into_iter().enumerate() {
                assert_eq!(ok.unwrap(), i % 2 == 0);
            }
            peak = peak.max(vm_rss_kib());
        }
        let after = vm_rss_kib();
        println!(
            "{}: VmRSS after {} verifications, {} at a time: {} MiB (before {} MiB, peak {} MiB)",
            if baseline { "baseline (allocate per verify)" } else { "worker-owned memory" },
            hasher.verifications(),
            hasher.permits.available_permits(),
            after / 1024,
            before / 1024,
            peak / 1024
        );
        assert_eq!(hasher.verifications(), 1000);
    }
}
