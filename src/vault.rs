//! Secrets at rest: every seed is sealed with XChaCha20-Poly1305 under one master key.
//!
//! The master key is 32 random bytes, kept as base64 text in a file (mode 0600) or handed in
//! through an environment variable. A sealed value is `v1:` + base64(nonce || ciphertext); the
//! caller's associated data (the key's public half) binds it to the record it belongs to.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use data_encoding::BASE64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;

/// Why the master key could not be had or a value not opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No key was given and the key file does not exist.
    #[error(
        "no master key: {path} does not exist; set NATS_AUTHD_MASTER_KEY or \
         --master-key-file to the key this data dir was created with"
    )]
    MissingMasterKey { path: PathBuf },
    /// The key text is not 32 bytes of base64.
    #[error("master key from {origin} is not 32 bytes of base64")]
    InvalidMasterKey { origin: String },
    /// The key opens nothing in this data dir.
    #[error(
        "the master key does not open this data dir; use the key it was created with \
         (NATS_AUTHD_MASTER_KEY or --master-key-file)"
    )]
    WrongMasterKey,
    /// A sealed value failed authentication: wrong key or tampered data.
    #[error("sealed value does not open (wrong master key or tampered data)")]
    Decrypt,
    /// A sealed value is not in the `v1:` format.
    #[error("sealed value is malformed")]
    Malformed,
    /// Reading or writing the key file failed.
    #[error("master key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// The key text itself (from `NATS_AUTHD_MASTER_KEY`).
    Inline(Zeroizing<String>),
    /// A file holding the key text.
    File(PathBuf),
}

impl fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterKeySource::Inline(_) => f.write_str("Inline(<redacted>)"),
            MasterKeySource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl MasterKeySource {
    /// Reads the key.
    ///
    /// # Errors
    /// [`VaultError::MissingMasterKey`] if the file is absent, [`VaultError::InvalidMasterKey`]
    /// if its text is not a key, [`VaultError::Io`] if it cannot be read.
    pub fn load(&self) -> Result<MasterKey, VaultError> {
        match self {
            MasterKeySource::Inline(text) => MasterKey::from_text(text, "NATS_AUTHD_MASTER_KEY"),
            MasterKeySource::File(path) => {
                let text = match std::fs::read_to_string(path) {
                    Ok(t) => Zeroizing::new(t),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(VaultError::MissingMasterKey { path: path.clone() })
                    }
                    Err(source) => return Err(VaultError::Io { path: path.clone(), source }),
                };
                #[cfg(unix)]
                if let Ok(meta) = std::fs::metadata(path) {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = meta.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "master key file is readable by others; chmod 600 it");
                    }
                }
                MasterKey::from_text(&text, &path.display().to_string())
            }
        }
    }
}

/// The key every seed is sealed under. Never printed; wiped on drop.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        MasterKey(Zeroizing::new(XChaCha20Poly1305::generate_key(&mut OsRng).into()))
    }

    /// A key from raw bytes (tests and known-answer checks).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    /// Parses the base64 text form.
    ///
    /// # Errors
    /// [`VaultError::InvalidMasterKey`] naming `origin` if it is not 32 bytes of base64.
    pub fn from_text(text: &str, origin: &str) -> Result<Self, VaultError> {
        let invalid = || VaultError::InvalidMasterKey { origin: origin.to_string() };
        let bytes = Zeroizing::new(BASE64.decode(text.trim().as_bytes()).map_err(|_| invalid())?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| invalid())?;
        Ok(MasterKey(Zeroizing::new(key)))
    }

    /// The base64 text form.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0.as_slice()))
    }

    /// Writes a fresh key to `path` with mode 0600; refuses to overwrite an existing file.
    ///
    /// # Errors
    /// [`VaultError::Io`] if the file exists or cannot be written.
    pub fn create_file(path: &Path) -> Result<Self, VaultError> {
        let io = |source| VaultError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let key = MasterKey::generate();
        let mut text = key.to_text();
        text.push('\n');
        // Never over an existing key: that would lock away every seed sealed with it.
        write_private(path, text.as_bytes(), Existing::Refuse).map_err(io)?;
        Ok(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }

    /// Seals `plaintext`, binding it to `aad`, under a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Sealed {
        self.seal_with_nonce(plaintext, aad, XChaCha20Poly1305::generate_nonce(&mut OsRng).into())
    }

    /// Seals under a given nonce: for known-answer tests. A nonce must never be used twice
    /// with one key; everything else calls [`MasterKey::seal`].
    pub fn seal_with_nonce(&self, plaintext: &[u8], aad: &[u8], nonce: [u8; NONCE_LEN]) -> Sealed {
        let nonce = XNonce::from(nonce);
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, Payload { msg: plaintext, aad })
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory input");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Sealed(format!("{SEALED_PREFIX}{}", BASE64.encode(&out)))
    }

    /// Opens a value sealed with the same key and `aad`.
    ///
    /// # Errors
    /// [`VaultError::Decrypt`] for a wrong key, wrong `aad` or tampering;
    /// [`VaultError::Malformed`] if it is not a sealed value.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let body = sealed.0.strip_prefix(SEALED_PREFIX).ok_or(VaultError::Malformed)?;
        let raw = BASE64.decode(body.as_bytes()).map_err(|_| VaultError::Malformed)?;
        if raw.len() < NONCE_LEN {
            return Err(VaultError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad })
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Decrypt)
    }
}

/// Makes the directory entry of `path` durable (after a create or a rename).
///
/// # Errors
/// The I/O error from opening or syncing the directory.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

/// What [`write_file`] does when the target already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Leave it alone and fail with [`std::io::ErrorKind::AlreadyExists`].
    Refuse,
    /// Replace it (atomically: a reader sees the old file or the new one, never a mix).
    Replace,
}

/// Who may read a file [`write_file`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner only (0600): seeds, creds, the master key.
    Private,
    /// Everyone may read (0644): the operator JWT, the server config.
    Public,
}

/// Writes a secret (creds, a key) readable by its owner only: [`write_file`] with
/// [`Access::Private`]. Every creds and key file nats-authd writes goes through here.
///
/// # Errors
/// As [`write_file`].
pub fn write_private(path: &Path, contents: &[u8], existing: Existing) -> std::io::Result<()> {
    write_file(path, contents, Access::Private, existing)
}

/// Writes `contents` to `path` so that no one ever sees a half-written file or a secret with
/// looser permissions: a fresh temp file in the same dir is created with its final mode (so
/// the mode of a file it replaces never carries over), filled, fsynced, then renamed (or,
/// with [`Existing::Refuse`], hard-linked, which fails if the target exists) over `path`.
///
/// # Errors
/// [`std::io::ErrorKind::AlreadyExists`] if `path` exists and `existing` is
/// [`Existing::Refuse`]; any other I/O error.
pub fn write_file(
    path: &Path,
    contents: &[u8],
    access: Access,
    existing: Existing,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = write_new(&tmp, contents, access).and_then(|()| match existing {
        Existing::Replace => std::fs::rename(&tmp, path),
        Existing::Refuse => {
            std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path)
}

/// Creates `path` (which must not exist: a stale or planted file is removed first, never
/// reused, so it cannot lend its mode or be a symlink elsewhere) and writes it durably.
fn write_new(path: &Path, contents: &[u8], access: Access) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(
        &mut options,
        match access {
            Access::Private => 0o600,
            Access::Public => 0o644,
        },
    );
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if access == Access::Private {
        // The creation mode is filtered by the umask; a private file must not depend on it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

/// A sealed secret as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"SUSECRET", b"UABC");
        assert!(!sealed.0.contains("SUSECRET"));
        assert_eq!(key.open(&sealed, b"UABC").unwrap().as_slice(), b"SUSECRET");
        assert!(matches!(key.open(&sealed, b"UXYZ"), Err(VaultError::Decrypt)));
        assert!(matches!(MasterKey::generate().open(&sealed, b"UABC"), Err(VaultError::Decrypt)));
        assert!(matches!(key.open(&Sealed("v1:!!".into()), b"UABC"), Err(VaultError::Malformed)));
    }

    #[test]
    fn sealing_under_a_known_nonce_is_deterministic_and_opens() {
        let key = MasterKey::from_bytes([7; 32]);
        let a = key.seal_with_nonce(b"seed", b"aad", [0; 24]);
        let b = key.seal_with_nonce(b"seed", b"aad", [0; 24]);
        assert_eq!(a, b, "same key, nonce and input: same sealed value");
        // v1: + base64(nonce || ciphertext || tag): 24 + 4 + 16 bytes.
        assert!(a.0.starts_with("v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "{}", a.0);
        assert_eq!(key.open(&a, b"aad").unwrap().as_slice(), b"seed");
        assert_ne!(key.seal_with_nonce(b"seed", b"aad", [1; 24]), a);
    }

    #[test]
    fn nonces_differ_between_seals() {
        let key = MasterKey::generate();
        assert_ne!(key.seal(b"x", b""), key.seal(b"x", b""));
    }

    #[test]
    fn text_form_round_trips_and_bad_text_is_rejected() {
        let key = MasterKey::from_bytes([7; 32]);
        let again = MasterKey::from_text(&key.to_text(), "test").unwrap();
        assert_eq!(*again.0, [7; 32]);
        assert!(matches!(
            MasterKey::from_text("c2hvcnQ=", "env"),
            Err(VaultError::InvalidMasterKey { .. })
        ));
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_private_file_replacing_a_readable_one_is_private_and_leaves_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.creds");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        let err = write_private(&path, b"SUSECRET", Existing::Refuse).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");

        write_private(&path, b"SUSECRET", Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"SUSECRET");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("user.creds")], "a temp file was left behind");
    }

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::create_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(MasterKey::create_file(&path), Err(VaultError::Io { .. })));
        let loaded = MasterKeySource::File(path).load().unwrap();
        assert_eq!(*loaded.0, *key.0);
        let missing = MasterKeySource::File(dir.path().join("nope")).load();
        assert!(matches!(missing, Err(VaultError::MissingMasterKey { .. })));
    }
}
