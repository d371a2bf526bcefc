//! NATS JWT v2: sign and verify operator, account, user, generic and auth-callout claims.
//!
//! A token is `base64url(header) . base64url(payload) . base64url(ed25519 signature)`, the
//! signature covering the first two parts as bytes. The payload holds the standard claims and a
//! `nats` body whose `type` names the kind; [`types`] has the bodies. Decoding checks, in order:
//! the shape and header, the issuer's key kind, the signature, the body's `type` and `version`,
//! then `exp`/`nbf` with a small clock-skew allowance. Each failure has its own [`ClaimsError`]
//! variant so callers (and tests) can tell a forged token from a stale one.

pub mod creds;
pub mod types;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::{KeyPair, KeyPairType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512_256};

pub use types::*;

/// The only header nats-server accepts for v2 tokens.
const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
pub const DEFAULT_CLOCK_SKEW_SECS: i64 = 5;

/// Why a token could not be signed or was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimsError {
    /// Not three base64url parts, or a payload that is not the claims JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header is not `{"typ":"JWT","alg":"ed25519-nkey"}`.
    #[error("unsupported token header")]
    UnsupportedHeader,
    /// The signature does not match the issuer's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The issuer (or signer) key is of a kind that may not issue this claim.
    #[error("issuer kind {found} may not issue {claim} claims")]
    WrongIssuerKind { claim: &'static str, found: String },
    /// The subject key is of the wrong kind for this claim.
    #[error("subject is not a valid {expected} key")]
    WrongSubjectKind { expected: &'static str },
    /// The `nats.type` is not the expected claim kind.
    #[error("expected {expected} claims, found {found:?}")]
    WrongClaimType { expected: &'static str, found: String },
    /// `nats.version` is not 2.
    #[error("unsupported claims version {0}")]
    UnsupportedVersion(i64),
    /// `exp` is in the past (beyond the allowed skew).
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    /// `nbf` is in the future (beyond the allowed skew).
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    /// The signing key could not sign (a public-only key).
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// A kind of `nats` body, tying its JSON `type` to the key kinds allowed to issue it.
pub trait ClaimBody: Serialize + DeserializeOwned {
    /// The `nats.type` value.
    const TYPE: &'static str;
    /// Key kinds that may sign this claim.
    const ISSUERS: &'static [KeyPairType];
    /// Key kind of `sub`, when the claim has a fixed one.
    const SUBJECT: Option<KeyPairType>;
    /// The `type`/`version` fields of the body.
    fn generic(&self) -> &GenericFields;
}

macro_rules! claim_body {
    ($ty:ty, $name:literal, [$($iss:ident),+], $sub:expr) => {
        impl ClaimBody for $ty {
            const TYPE: &'static str = $name;
            const ISSUERS: &'static [KeyPairType] = &[$(KeyPairType::$iss),+];
            const SUBJECT: Option<KeyPairType> = $sub;
            fn generic(&self) -> &GenericFields {
                &self.generic
            }
        }
    };
}

claim_body!(Operator, "operator", [Operator], Some(KeyPairType::Operator));
claim_body!(Account, "account", [Operator], Some(KeyPairType::Account));
claim_body!(User, "user", [Account], Some(KeyPairType::User));
claim_body!(Generic, "generic", [Operator], None);
claim_body!(AuthorizationRequest, "authorization_request", [Server], None);
claim_body!(AuthorizationResponse, "authorization_response", [Account], Some(KeyPairType::User));

/// Standard JWT claims around a `nats` body. Field order follows nats-io/jwt's `ClaimsData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<N> {
    #[serde(rename = "aud", default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(rename = "exp", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Content hash, filled in by [`encode`]. The server does not check it.
    #[serde(rename = "jti", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "iat", default)]
    pub issued_at: i64,
    /// Public key of the signer, filled in by [`encode`].
    #[serde(rename = "iss", default)]
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "nbf", default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    #[serde(rename = "sub")]
    pub subject: String,
    pub nats: N,
}

impl<N: ClaimBody> Claims<N> {
    /// Claims about `subject` issued at `now` (unix seconds).
    pub fn new(subject: impl Into<String>, nats: N, now: i64) -> Self {
        Claims {
            audience: None,
            expires: None,
            id: String::new(),
            issued_at: now,
            issuer: String::new(),
            name: None,
            not_before: None,
            subject: subject.into(),
            nats,
        }
    }

    /// Sets `name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Time checks applied by [`decode`].
#[derive(Debug, Clone, Copy)]
pub struct Validation {
    /// The current unix time, in seconds.
    pub now: i64,
    /// Seconds of tolerated clock difference.
    pub skew: i64,
}

impl Validation {
    /// Checks against `now` with the default skew.
    pub fn at(now: i64) -> Self {
        Validation { now, skew: DEFAULT_CLOCK_SKEW_SECS }
    }
}

/// Signs `claims` with `signer`, filling in `iss` and `jti`; returns the token.
///
/// # Errors
/// [`ClaimsError::WrongIssuerKind`] if `signer` may not issue this kind of claim,
/// [`ClaimsError::WrongSubjectKind`] if `sub` is not a key of the right kind,
/// [`ClaimsError::Signing`] if `signer` holds no seed.
pub fn encode<N: ClaimBody>(claims: &Claims<N>, signer: &KeyPair) -> Result<String, ClaimsError> {
    check_issuer_kind::<N>(&signer.key_pair_type())?;
    check_subject::<N>(&claims.subject)?;
    let mut claims = ClaimsRef { inner: claims, issuer: signer.public_key(), id: String::new() };
    // jti is a SHA-512/256 of the claims without it, like nats-io/jwt's, but over the whole
    // payload rather than only the standard claims: two tokens that differ only in `nats` then
    // differ in jti too, which the server's resolver uses to skip a "same" preload. It stays
    // deterministic, so known-answer tests can pin whole tokens.
    let unsigned = serde_json::to_vec(&claims).map_err(|e| ClaimsError::Signing(e.to_string()))?;
    claims.id = BASE32_NOPAD.encode(&Sha512_256::digest(&unsigned));
    let payload = serde_json::to_vec(&claims).map_err(|e| ClaimsError::Signing(e.to_string()))?;
    let signing_input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(HEADER.as_bytes()),
        BASE64URL_NOPAD.encode(&payload)
    );
    let signature =
        signer.sign(signing_input.as_bytes()).map_err(|e| ClaimsError::Signing(e.to_string()))?;
    Ok(format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&signature)))
}

/// Serializes borrowed claims with `iss`/`jti` replaced, so [`encode`] needs no clone.
struct ClaimsRef<'a, N> {
    inner: &'a Claims<N>,
    issuer: String,
    id: String,
}

impl<N: Serialize> Serialize for ClaimsRef<'_, N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'b, N> {
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: &'b Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            exp: &'b Option<i64>,
            #[serde(skip_serializing_if = "str::is_empty")]
            jti: &'b str,
            iat: i64,
            iss: &'b str,
            #[serde(skip_serializing_if = "Option::is_none")]
            name: &'b Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            nbf: &'b Option<i64>,
            sub: &'b str,
            nats: &'b N,
        }
        Wire {
            aud: &self.inner.audience,
            exp: &self.inner.expires,
            jti: &self.id,
            iat: self.inner.issued_at,
            iss: &self.issuer,
            name: &self.inner.name,
            nbf: &self.inner.not_before,
            sub: &self.inner.subject,
            nats: &self.inner.nats,
        }
        .serialize(s)
    }
}

/// Just enough of the payload to find the issuer and kind before trusting anything else.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    nats: EnvelopeBody,
}

#[derive(Deserialize, Default)]
struct EnvelopeBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    version: i64,
}

/// Verifies `token` as an `N` claim and returns it.
///
/// # Errors
/// A distinct [`ClaimsError`] for each way the token can be wrong; see the module docs.
pub fn decode<N: ClaimBody>(
    token: &str,
    validation: &Validation,
) -> Result<Claims<N>, ClaimsError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::Malformed("expected three dot-separated parts".into()));
    };
    let header_bytes = b64(header, "header")?;
    let header_json: serde_json::Value = serde_json::from_slice(&header_bytes)
        .map_err(|_| ClaimsError::Malformed("header is not JSON".into()))?;
    let typ = header_json.get("typ").and_then(|v| v.as_str()).unwrap_or_default();
    let alg = header_json.get("alg").and_then(|v| v.as_str()).unwrap_or_default();
    if !typ.eq_ignore_ascii_case("jwt") || !alg.eq_ignore_ascii_case("ed25519-nkey") {
        return Err(ClaimsError::UnsupportedHeader);
    }
    let payload_bytes = b64(payload, "payload")?;
    let signature = b64(signature, "signature")?;
    let envelope: Envelope = serde_json::from_slice(&payload_bytes)
        .map_err(|e| ClaimsError::Malformed(json_error("payload", &e)))?;

    let signing_input_len = header.len() + 1 + payload.len();
    with_issuer(&envelope.iss, |issuer| {
        check_issuer_kind::<N>(&issuer.key_pair_type())?;
        issuer
            .verify(&token.as_bytes()[..signing_input_len], &signature)
            .map_err(|_| ClaimsError::BadSignature)
    })?;

    if envelope.nats.kind != N::TYPE {
        return Err(ClaimsError::WrongClaimType { expected: N::TYPE, found: envelope.nats.kind });
    }
    if envelope.nats.version != CLAIMS_VERSION {
        return Err(ClaimsError::UnsupportedVersion(envelope.nats.version));
    }
    let claims: Claims<N> = serde_json::from_slice(&payload_bytes)
        .map_err(|e| ClaimsError::Malformed(json_error("payload", &e)))?;
    check_subject::<N>(&claims.subject)?;

    let now = validation.now;
    if let Some(exp) = claims.expires.filter(|exp| *exp > 0) {
        if now > exp + validation.skew {
            return Err(ClaimsError::Expired { exp, now });
        }
    }
    if let Some(nbf) = claims.not_before.filter(|nbf| *nbf > 0) {
        if now + validation.skew < nbf {
            return Err(ClaimsError::NotYetValid { nbf, now });
        }
    }
    Ok(claims)
}

/// Where JSON failed to parse, without serde's text: that can quote values, and a callout
/// request's values include passwords.
pub fn json_error(what: &str, e: &serde_json::Error) -> String {
    format!(
        "{what} is not valid claims JSON ({:?} error at line {} column {})",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, ClaimsError> {
    BASE64URL_NOPAD
        .decode(part.as_bytes())
        .map_err(|_| ClaimsError::Malformed(format!("{what} is not base64url")))
}

thread_local! {
    /// The issuer key this thread decoded last. The callout verifies every request against
    /// the same few server keys, and decoding one (decompressing its curve point) cost about
    /// a quarter of the signature check itself.
    static LAST_ISSUER: std::cell::RefCell<Option<(String, KeyPair)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `check` with the public key `iss` decoded, from [`LAST_ISSUER`] when it is the same.
fn with_issuer<T>(
    iss: &str,
    check: impl FnOnce(&KeyPair) -> Result<T, ClaimsError>,
) -> Result<T, ClaimsError> {
    LAST_ISSUER.with(|last| {
        let mut last = last.borrow_mut();
        if !matches!(&*last, Some((cached, _)) if cached == iss) {
            let key = KeyPair::from_public_key(iss)
                .map_err(|_| ClaimsError::Malformed("issuer is not a public key".into()))?;
            *last = Some((iss.to_string(), key));
        }
        let (_, key) = last.as_ref().expect("just filled");
        check(key)
    })
}

fn check_issuer_kind<N: ClaimBody>(kind: &KeyPairType) -> Result<(), ClaimsError> {
    if N::ISSUERS.contains(kind) {
        Ok(())
    } else {
        Err(ClaimsError::WrongIssuerKind { claim: N::TYPE, found: format!("{kind:?}") })
    }
}

fn check_subject<N: ClaimBody>(subject: &str) -> Result<(), ClaimsError> {
    let Some(expected) = N::SUBJECT else {
        return Ok(());
    };
    // Prefix and checksum, as nats-server checks a subject; decompressing the curve point
    // (`KeyPair::from_public_key`) cost a field inversion per claim for nothing.
    match nkeys::from_public_key(subject) {
        Ok((prefix, _)) if KeyPairType::from(prefix) == expected => Ok(()),
        _ => Err(ClaimsError::WrongSubjectKind { expected: key_kind_name(&expected) }),
    }
}

fn key_kind_name(kind: &KeyPairType) -> &'static str {
    match kind {
        KeyPairType::Operator => "operator",
        KeyPairType::Account => "account",
        KeyPairType::User => "user",
        KeyPairType::Server => "server",
        KeyPairType::Curve => "curve",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
