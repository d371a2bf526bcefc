//! xkey sealing of callout traffic, with the key agreement done once per server.
//!
//! nats-server seals each authorization request to AUTH's curve key with its own (per-process)
//! curve key, and expects the answer sealed back. `nkeys::XKey::open`/`seal` redo the x25519
//! key agreement on every call: twice per login, the largest single cost in the service's
//! handler. The shared key between AUTH's key and a given server key never changes, so
//! [`Sealing`] keeps one opened box per server key. The wire format is nkeys' own (`xkv1`,
//! the 24-byte nonce, the box); the tests check both directions against `nkeys::XKey`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crypto_box::aead::{Aead, AeadCore};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use nkeys::XKey;

/// What nkeys writes before the nonce of a sealed message.
const VERSION: &[u8] = b"xkv1";
/// The nonce length of the box.
const NONCE: usize = 24;
/// Most server keys remembered; past that the cache starts over. Each nats-server process has
/// one, so this is servers (and their restarts) in use at once.
const MAX_SERVERS: usize = 256;

/// Why a message could not be opened or sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The peer's key is not a curve public key.
    #[error("not a curve public key")]
    BadKey,
    /// Too short, wrong version, or it does not authenticate.
    #[error("the sealed message does not open")]
    Open,
    /// Our own key has no secret half.
    #[error("no curve secret key")]
    NoSecret,
    /// Encryption failed (it cannot with this cipher; kept so no path panics).
    #[error("cannot seal")]
    Seal,
}

/// AUTH's curve key and one opened box per server key it talked to.
pub struct Sealing {
    secret: SecretKey,
    boxes: Mutex<HashMap<String, Arc<SalsaBox>>>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing").finish_non_exhaustive()
    }
}

impl Sealing {
    /// Sealing with `ours` (which must hold its seed).
    ///
    /// # Errors
    /// [`SealError::NoSecret`] if `ours` is a public key only.
    pub fn new(ours: &XKey) -> Result<Sealing, SealError> {
        let seed = zeroize::Zeroizing::new(ours.seed().map_err(|_| SealError::NoSecret)?);
        let (_, raw) = nkeys::decode_seed(&seed).map_err(|_| SealError::NoSecret)?;
        let raw = zeroize::Zeroizing::new(raw);
        Ok(Sealing { secret: SecretKey::from_bytes(*raw), boxes: Mutex::default() })
    }

    /// The box shared with the server whose curve public key is `peer` (`X...`).
    fn with(&self, peer: &str) -> Result<Arc<SalsaBox>, SealError> {
        if let Some(b) = self.boxes.lock().expect("sealing lock").get(peer) {
            return Ok(Arc::clone(b));
        }
        // `XKey::from_public_key` checks the prefix (a curve key) and the checksum.
        XKey::from_public_key(peer).map_err(|_| SealError::BadKey)?;
        let (_, raw) = nkeys::from_public_key(peer).map_err(|_| SealError::BadKey)?;
        let opened = Arc::new(SalsaBox::new(&PublicKey::from(raw), &self.secret));
        let mut boxes = self.boxes.lock().expect("sealing lock");
        if boxes.len() >= MAX_SERVERS {
            boxes.clear();
        }
        boxes.insert(peer.to_string(), Arc::clone(&opened));
        Ok(opened)
    }

    /// Opens `sealed`, sent by `peer`.
    ///
    /// # Errors
    /// [`SealError::BadKey`] or [`SealError::Open`].
    pub fn open(&self, sealed: &[u8], peer: &str) -> Result<Vec<u8>, SealError> {
        let b = self.with(peer)?;
        let rest = sealed.strip_prefix(VERSION).ok_or(SealError::Open)?;
        if rest.len() <= NONCE {
            return Err(SealError::Open);
        }
        let (nonce, body) = rest.split_at(NONCE);
        b.decrypt(nonce.into(), body).map_err(|_| SealError::Open)
    }

    /// Seals `plain` for `peer`, with a fresh random nonce.
    ///
    /// # Errors
    /// [`SealError::BadKey`] or [`SealError::Seal`].
    pub fn seal(&self, plain: &[u8], peer: &str) -> Result<Vec<u8>, SealError> {
        let b = self.with(peer)?;
        let nonce = SalsaBox::generate_nonce(&mut crypto_box::aead::OsRng);
        let body = b.encrypt(&nonce, plain).map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(VERSION.len() + NONCE + body.len());
        out.extend_from_slice(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_nkeys_seals_opens_here_and_what_is_sealed_here_opens_in_nkeys() {
        let ours = XKey::new();
        let server = XKey::new();
        let sealing = Sealing::new(&ours).unwrap();
        let peer = server.public_key();
        let ours_public = XKey::from_public_key(&ours.public_key()).unwrap();
        let server_public = XKey::from_public_key(&peer).unwrap();

        let request = server.seal(b"the request", &ours_public).unwrap();
        assert_eq!(sealing.open(&request, &peer).unwrap(), b"the request");
        // Twice: the second opening uses the remembered box.
        let again = server.seal(b"another", &ours_public).unwrap();
        assert_eq!(sealing.open(&again, &peer).unwrap(), b"another");

        let answer = sealing.seal(b"the answer", &peer).unwrap();
        assert_eq!(server.open(&answer, &ours_public).unwrap(), b"the answer");
        let second = sealing.seal(b"the answer", &peer).unwrap();
        assert_ne!(answer, second, "a fresh nonce each time");
        // nkeys' own sealing between the same keys agrees with ours.
        assert_eq!(
            ours.open(&server.seal(b"x", &ours_public).unwrap(), &server_public).unwrap(),
            b"x"
        );
    }

    #[test]
    fn tampered_truncated_or_misaddressed_messages_do_not_open() {
        let ours = XKey::new();
        let server = XKey::new();
        let other = XKey::new();
        let sealing = Sealing::new(&ours).unwrap();
        let ours_public = XKey::from_public_key(&ours.public_key()).unwrap();
        let mut sealed = server.seal(b"the request", &ours_public).unwrap();
        // Claimed to come from another server: the shared key differs.
        assert!(matches!(sealing.open(&sealed, &other.public_key()), Err(SealError::Open)));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(sealing.open(&sealed, &server.public_key()), Err(SealError::Open)));
        assert!(matches!(sealing.open(b"xkv1short", &server.public_key()), Err(SealError::Open)));
        assert!(matches!(sealing.open(&sealed[4..], &server.public_key()), Err(SealError::Open)));
        // Not a curve key: an account key, and garbage.
        let account = nkeys::KeyPair::new_account().public_key();
        assert!(matches!(sealing.open(&sealed, &account), Err(SealError::BadKey)));
        assert!(matches!(sealing.seal(b"x", "XNOTAKEY"), Err(SealError::BadKey)));
        assert!(matches!(
            Sealing::new(&XKey::from_public_key(&ours.public_key()).unwrap()),
            Err(SealError::NoSecret)
        ));
    }
}
