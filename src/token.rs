//! API tokens: `authd_<id>_<secret>`, the format and minting.
//!
//! A token is 256 random bits of secret behind an 80-bit public id, so a fast hash is enough
//! at rest (there is no dictionary to attack): the store keeps a SHA-256 of the secret, and
//! the secret itself is shown once, when the token is made. The id is public (it appears in
//! audit events and `token.list`).

use data_encoding::{BASE32_NOPAD, HEXLOWER};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::model::{AccountName, TokenRecord, UnixTime, UserName};

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "authd_";
/// Random bytes in a token's secret.
pub const SECRET_BYTES: usize = 32;
/// Random bytes in a token's id.
pub const ID_BYTES: usize = 10;

/// An API token, id and secret base32 (lower case, no padding). Its secret is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Token {
    /// A fresh token from the system's randomness: 80-bit id, 256-bit secret.
    pub fn generate() -> Token {
        Token::from_bytes(rand::random(), &Zeroizing::new(rand::random()))
    }

    /// The token made of these random bytes (known-answer tests pass their own).
    pub fn from_bytes(id: [u8; ID_BYTES], secret: &[u8; SECRET_BYTES]) -> Token {
        Token {
            id: BASE32_NOPAD.encode(&id).to_lowercase(),
            secret: Zeroizing::new(BASE32_NOPAD.encode(secret).to_lowercase()),
        }
    }

    /// Parses `authd_<id>_<secret>`.
    pub fn parse(text: &str) -> Option<Token> {
        let rest = text.strip_prefix(TOKEN_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let valid = |s: &str| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        };
        (valid(id) && valid(secret))
            .then(|| Token { id: id.to_string(), secret: Zeroizing::new(secret.to_string()) })
    }

    /// The whole token text, to hand out once.
    pub fn text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret.as_str()))
    }

    /// Hex SHA-256 of the secret, as stored.
    pub fn secret_sha256(&self) -> String {
        HEXLOWER.encode(&Sha256::digest(self.secret.as_bytes()))
    }

    /// The record that stores this token for `account/user`.
    pub fn record(
        &self,
        account: &AccountName,
        user: &UserName,
        description: String,
        now: UnixTime,
    ) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            account: account.clone(),
            user: user.clone(),
            description,
            secret_sha256: self.secret_sha256(),
            created_at: now,
        }
    }
}

/// A new token for `account/user`: its text (shown once) and the record to store.
pub fn mint(
    account: &AccountName,
    user: &UserName,
    description: String,
    now: UnixTime,
) -> (Zeroizing<String>, TokenRecord) {
    let token = Token::generate();
    (token.text(), token.record(account, user, description, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_from_known_bytes_is_known() {
        let token = Token::from_bytes([0; ID_BYTES], &[0xff; SECRET_BYTES]);
        assert_eq!(token.id, "aaaaaaaaaaaaaaaa");
        assert_eq!(token.secret.as_str(), "777777777777777777777777777777777777777777777777777q");
        assert_eq!(
            token.text().as_str(),
            "authd_aaaaaaaaaaaaaaaa_777777777777777777777777777777777777777777777777777q"
        );
        // SHA-256 of the secret's text, as the store keeps it (checked with Python's hashlib).
        assert_eq!(
            token.secret_sha256(),
            "83e2fd0efe245ce86664628c0edc8d6b748f256b21205a08ab4db959b8a390db"
        );
        assert_eq!(Token::parse(&token.text()), Some(token.clone()));
        assert!(!format!("{token:?}").contains("7777"), "Debug never prints the secret");
    }
}
