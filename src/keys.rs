//! Keys of the trust chain: who holds which nkey, and how seeds are kept out of sight.
//!
//! The chain is operator -> operator signing key -> account -> account signing key -> user.
//! Identity keys sign only what names them (the operator JWT is self-signed); day-to-day tokens
//! are signed by signing keys, so an identity seed can be kept colder. Every seed leaves this
//! module sealed ([`SealedKey`]) or inside a [`Seed`], whose `Debug` never prints it.

use std::fmt;

use nkeys::{KeyPair, KeyPairType, XKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::vault::{MasterKey, Sealed, VaultError};

/// The private half of an nkey, as its `S...` text. Never printed, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed(Zeroizing<String>);

impl Seed {
    /// Wraps seed text.
    pub fn new(seed: String) -> Self {
        Seed(Zeroizing::new(seed))
    }

    /// The seed text, for the few places that must hand it out (creds files, signing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// Why a key could not be made, opened or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The sealed seed could not be opened (wrong master key or tampered record).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The seed text is not a valid nkey seed.
    #[error("invalid nkey seed")]
    InvalidSeed,
    /// The opened seed belongs to another public key or another kind of key.
    #[error("sealed seed does not match public key {public}")]
    Mismatch { public: String },
}

/// What a key is for; decides its nkey kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// The operator's identity; signs only the operator JWT.
    Operator,
    /// Signs account JWTs and claims-delete requests.
    OperatorSigning,
    /// An account's identity: the account's public key.
    Account,
    /// Signs the account's user JWTs and callout responses.
    AccountSigning,
    /// A user's identity.
    User,
    /// X25519 key the server seals callout requests to.
    Curve,
}

impl KeyRole {
    fn kind(self) -> KeyPairType {
        match self {
            KeyRole::Operator | KeyRole::OperatorSigning => KeyPairType::Operator,
            KeyRole::Account | KeyRole::AccountSigning => KeyPairType::Account,
            KeyRole::User => KeyPairType::User,
            KeyRole::Curve => KeyPairType::Curve,
        }
    }
}

/// A key as stored: public key in clear, seed sealed under the master key.
///
/// The seed is sealed with the public key as associated data, so a sealed seed copied onto
/// another record does not open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// What the key is for.
    pub role: KeyRole,
    /// Public key (`O...`, `A...`, `U...`, `X...`).
    pub public: String,
    /// The seed, sealed.
    pub seed: Sealed,
}

impl SealedKey {
    /// Makes a fresh key for `role` from the system's randomness and seals its seed.
    pub fn generate(role: KeyRole, master: &MasterKey) -> Self {
        let raw = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
        Self::from_raw(role, &raw, master)
    }

    /// The key for `role` made from these 32 random bytes, sealed: what [`SealedKey::generate`]
    /// does with fresh bytes, and what known-answer tests do with fixed ones.
    pub fn from_raw(role: KeyRole, raw: &[u8; 32], master: &MasterKey) -> Self {
        let (public, seed) = match role {
            KeyRole::Curve => {
                let xkey = XKey::new_from_raw(*raw);
                let seed = xkey.seed().expect("a generated xkey has a seed");
                (xkey.public_key(), Seed::new(seed))
            }
            _ => {
                let kp = KeyPair::new_from_raw(role.kind(), *raw)
                    .expect("32 raw bytes always make a key pair");
                let seed = kp.seed().expect("a generated key pair has a seed");
                (kp.public_key(), Seed::new(seed))
            }
        };
        Self::seal(role, public, &seed, master)
    }

    /// Seals an existing seed for `public`.
    pub fn seal(role: KeyRole, public: String, seed: &Seed, master: &MasterKey) -> Self {
        let sealed = master.seal(seed.expose().as_bytes(), public.as_bytes());
        SealedKey { role, public, seed: sealed }
    }

    /// Opens the seed.
    ///
    /// # Errors
    /// [`KeyError::Vault`] with the wrong master key or a tampered record.
    pub fn open_seed(&self, master: &MasterKey) -> Result<Seed, KeyError> {
        let bytes = master.open(&self.seed, self.public.as_bytes())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::InvalidSeed)?;
        Ok(Seed::new(text.to_string()))
    }

    /// Opens the seed as a signing key pair, checking it is the key it claims to be.
    ///
    /// # Errors
    /// [`KeyError`] if it cannot be opened or does not match `public` and `role`.
    pub fn key_pair(&self, master: &MasterKey) -> Result<KeyPair, KeyError> {
        let seed = self.open_seed(master)?;
        let kp = KeyPair::from_seed(seed.expose()).map_err(|_| KeyError::InvalidSeed)?;
        if kp.public_key() != self.public || kp.key_pair_type() != self.role.kind() {
            return Err(KeyError::Mismatch { public: self.public.clone() });
        }
        Ok(kp)
    }

    /// Opens a curve seed as an xkey.
    ///
    /// # Errors
    /// [`KeyError`] if it cannot be opened or is not the curve key `public`.
    pub fn xkey(&self, master: &MasterKey) -> Result<XKey, KeyError> {
        let seed = self.open_seed(master)?;
        let xkey = XKey::from_seed(seed.expose()).map_err(|_| KeyError::InvalidSeed)?;
        if xkey.public_key() != self.public {
            return Err(KeyError::Mismatch { public: self.public.clone() });
        }
        Ok(xkey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 32 key bytes inside an nkey public key: base32 of prefix, key, CRC-16.
    fn raw_public(nkey: &str) -> String {
        let bytes = data_encoding::BASE32_NOPAD.decode(nkey.as_bytes()).unwrap();
        data_encoding::HEXLOWER.encode(&bytes[1..33])
    }

    #[test]
    fn keys_made_from_known_bytes_are_known() {
        let master = MasterKey::from_bytes([7; 32]);
        // Expected values computed apart from this code, with Python's `cryptography`:
        // the ed25519 public key of the all-zero seed and the x25519 public key of 32 bytes 0x01.
        const ED25519_OF_ZEROS: &str =
            "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
        const X25519_OF_ONES: &str =
            "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209";
        let user = SealedKey::from_raw(KeyRole::User, &[0; 32], &master);
        assert!(user.public.starts_with('U'));
        assert_eq!(raw_public(&user.public), ED25519_OF_ZEROS);
        assert_eq!(user.key_pair(&master).unwrap().public_key(), user.public);
        let account = SealedKey::from_raw(KeyRole::Account, &[0; 32], &master);
        assert!(account.public.starts_with('A'));
        assert_eq!(raw_public(&account.public), ED25519_OF_ZEROS, "same key, another role");
        let curve = SealedKey::from_raw(KeyRole::Curve, &[1; 32], &master);
        assert!(curve.public.starts_with('X'));
        assert_eq!(raw_public(&curve.public), X25519_OF_ONES);
        assert_eq!(curve.xkey(&master).unwrap().public_key(), curve.public);
    }

    #[test]
    fn sealed_keys_open_to_the_same_key_of_the_right_kind() {
        let master = MasterKey::generate();
        for (role, prefix) in [
            (KeyRole::Operator, 'O'),
            (KeyRole::OperatorSigning, 'O'),
            (KeyRole::Account, 'A'),
            (KeyRole::AccountSigning, 'A'),
            (KeyRole::User, 'U'),
        ] {
            let key = SealedKey::generate(role, &master);
            assert!(key.public.starts_with(prefix), "{role:?}");
            assert_eq!(key.key_pair(&master).unwrap().public_key(), key.public);
        }
        let curve = SealedKey::generate(KeyRole::Curve, &master);
        assert!(curve.public.starts_with('X'));
        assert_eq!(curve.xkey(&master).unwrap().public_key(), curve.public);
    }

    #[test]
    fn seed_is_not_in_debug_or_the_sealed_record() {
        let master = MasterKey::generate();
        let key = SealedKey::generate(KeyRole::User, &master);
        let seed = key.open_seed(&master).unwrap();
        assert_eq!(format!("{seed:?}"), "Seed(<redacted>)");
        let stored = serde_json::to_string(&key).unwrap();
        assert!(!stored.contains(seed.expose()));
        assert!(!format!("{key:?}").contains(seed.expose()));
    }

    #[test]
    fn sealed_seed_moved_to_another_public_key_does_not_open() {
        let master = MasterKey::generate();
        let a = SealedKey::generate(KeyRole::User, &master);
        let b = SealedKey::generate(KeyRole::User, &master);
        let forged = SealedKey { seed: a.seed.clone(), ..b };
        assert!(matches!(forged.key_pair(&master), Err(KeyError::Vault(_))));
    }

    #[test]
    fn wrong_master_key_does_not_open() {
        let key = SealedKey::generate(KeyRole::Account, &MasterKey::generate());
        assert!(matches!(key.key_pair(&MasterKey::generate()), Err(KeyError::Vault(_))));
    }
}
