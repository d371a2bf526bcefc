//! This process's identity among several nats-authd instances sharing one store.
//!
//! An [`InstanceId`] is the host name plus 32 random bits, new for every process: a restarted
//! instance is a new one (its lease, limiter broadcasts and in-flight requests are not the old
//! process's), and people reading `status` can still tell which machine it runs on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identity of one running nats-authd process: `host/xxxxxxxx`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// A fresh id for this process: its host name and a random suffix.
    pub fn generate() -> Self {
        InstanceId(format!("{}/{:08x}", host_name(), rand::random::<u32>()))
    }

    /// An id with this exact text (tests, and ids read back from the store or the wire).
    pub fn from_text(text: impl Into<String>) -> Self {
        InstanceId(text.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The machine's host name, without a system call wrapper: `/proc` on Linux, `$HOSTNAME`
/// elsewhere, `unknown` if neither says. Only for people to read; uniqueness comes from the
/// random suffix.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    // One NATS subject token and one status column: no dots, spaces or wildcards.
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(63)
        .collect();
    if clean.is_empty() {
        "unknown".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_per_process_and_name_the_host() {
        let (a, b) = (InstanceId::generate(), InstanceId::generate());
        assert_ne!(a, b);
        let (host, suffix) = a.as_str().rsplit_once('/').unwrap();
        assert!(!host.is_empty() && !host.contains('.'));
        assert_eq!(suffix.len(), 8);
    }
}
