//! Which store backend a deployment runs on: chosen once by `init`, kept in the data dir as
//! [`FILE`], read by `serve` and `up` (so no serve flag can disagree with the data).
//!
//! A data dir without the file is a sled deployment (every data dir made before the file
//! existed is one).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::jetstream::{JetStreamOptions, DEFAULT_STREAM};
use crate::vault::{self, Access, Existing};

/// The settings file in the data dir.
pub const FILE: &str = "store.json";

/// A store backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded sled store in the data dir: one instance.
    #[default]
    Sled,
    /// One JetStream stream in the AUTH account, shared by every instance.
    Jetstream,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sled => "sled",
            Backend::Jetstream => "jetstream",
        })
    }
}

/// What [`FILE`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreChoice {
    /// The backend.
    pub backend: Backend,
    /// The stream's name (JetStream only).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Copies of the stream in a cluster (JetStream only).
    #[serde(default = "one")]
    pub replicas: usize,
}

fn default_stream() -> String {
    DEFAULT_STREAM.to_string()
}

fn one() -> usize {
    1
}

impl Default for StoreChoice {
    fn default() -> Self {
        StoreChoice { backend: Backend::Sled, stream: default_stream(), replicas: 1 }
    }
}

impl std::fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.backend {
            Backend::Sled => f.write_str("sled"),
            Backend::Jetstream => {
                write!(f, "jetstream (stream {}, replicas {})", self.stream, self.replicas)
            }
        }
    }
}

impl StoreChoice {
    /// A JetStream store with `replicas` copies, in the default stream.
    pub fn jetstream(replicas: usize) -> Self {
        StoreChoice { backend: Backend::Jetstream, replicas, ..StoreChoice::default() }
    }

    /// Whether the deployment runs on JetStream.
    pub fn is_jetstream(&self) -> bool {
        self.backend == Backend::Jetstream
    }

    /// The JetStream store's options.
    pub fn jetstream_options(&self) -> JetStreamOptions {
        JetStreamOptions {
            stream: self.stream.clone(),
            replicas: self.replicas,
            ..JetStreamOptions::default()
        }
    }
}

/// What `init` was asked for; `None` keeps what the data dir has (sled for a new one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreRequest {
    /// `--store`.
    pub backend: Option<Backend>,
    /// `--replicas`.
    pub replicas: Option<usize>,
}

impl StoreRequest {
    /// The choice for a new data dir.
    ///
    /// # Errors
    /// [`ChoiceError::Invalid`] for replicas with sled, or replicas outside 1..=5.
    pub fn for_new(&self) -> Result<StoreChoice, ChoiceError> {
        let backend = self.backend.unwrap_or_default();
        match (backend, self.replicas) {
            (Backend::Sled, Some(_)) => {
                Err(ChoiceError::Invalid("--replicas applies to --store jetstream only"))
            }
            (Backend::Sled, None) => Ok(StoreChoice::default()),
            // JetStream's own bounds for a stream's replicas.
            (Backend::Jetstream, Some(n)) if !(1..=5).contains(&n) => {
                Err(ChoiceError::Invalid("--replicas must be 1 to 5"))
            }
            (Backend::Jetstream, n) => Ok(StoreChoice::jetstream(n.unwrap_or(1))),
        }
    }

    /// Whether an existing data dir's `have` satisfies this request (what was not asked for
    /// always does).
    pub fn agrees_with(&self, have: &StoreChoice) -> bool {
        self.backend.is_none_or(|b| b == have.backend)
            && self.replicas.is_none_or(|r| have.is_jetstream() && r == have.replicas)
    }
}

/// Why the store choice could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not a store choice.
    #[error("{path} is not a nats-authd store choice: {message}")]
    Malformed { path: PathBuf, message: String },
    /// The request is contradictory.
    #[error("{0}")]
    Invalid(&'static str),
}

/// The settings file of `data_dir`.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The choice kept in `data_dir`, or `None` when there is no file.
///
/// # Errors
/// [`ChoiceError::Read`], [`ChoiceError::Malformed`].
pub fn read(data_dir: &Path) -> Result<Option<StoreChoice>, ChoiceError> {
    let path = file(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ChoiceError::Read { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ChoiceError::Malformed { path, message: e.to_string() })
}

/// The choice `serve` runs with: the file's, or sled when there is none.
///
/// # Errors
/// As [`read`].
pub fn current(data_dir: &Path) -> Result<StoreChoice, ChoiceError> {
    Ok(read(data_dir)?.unwrap_or_default())
}

/// Writes `choice` into `data_dir` (fsynced, replacing the file).
///
/// # Errors
/// I/O errors.
pub fn write(data_dir: &Path, choice: &StoreChoice) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(choice).expect("choices serialize");
    vault::write_file(&file(data_dir), &text, Access::Public, Existing::Replace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_new_and_existing_dirs() {
        let none = StoreRequest::default();
        assert_eq!(none.for_new().unwrap(), StoreChoice::default());
        let js3 = StoreRequest { backend: Some(Backend::Jetstream), replicas: Some(3) };
        assert_eq!(js3.for_new().unwrap(), StoreChoice::jetstream(3));
        let sled_replicas = StoreRequest { backend: None, replicas: Some(3) };
        assert!(sled_replicas.for_new().is_err());

        let have = StoreChoice::jetstream(3);
        assert!(none.agrees_with(&have));
        assert!(js3.agrees_with(&have));
        assert!(
            StoreRequest { backend: Some(Backend::Jetstream), replicas: None }.agrees_with(&have)
        );
        assert!(!StoreRequest { backend: Some(Backend::Sled), replicas: None }.agrees_with(&have));
        assert!(!StoreRequest { backend: None, replicas: Some(1) }.agrees_with(&have));
        assert!(!sled_replicas.agrees_with(&StoreChoice::default()));
    }

    #[test]
    fn the_file_round_trips_and_absence_is_sled() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        assert_eq!(current(dir.path()).unwrap(), StoreChoice::default());
        write(dir.path(), &StoreChoice::jetstream(3)).unwrap();
        assert_eq!(current(dir.path()).unwrap(), StoreChoice::jetstream(3));
        std::fs::write(file(dir.path()), b"{\"backend\":\"etcd\"}").unwrap();
        assert!(matches!(read(dir.path()), Err(ChoiceError::Malformed { .. })));
    }
}
