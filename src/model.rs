//! The records nats-authd keeps, and validated names: a value of these types is valid.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::claims::{Export, Import, OperatorLimits, Permissions};
use crate::keys::{KeyRole, SealedKey};
use crate::vault::MasterKey;

/// Unix time in seconds.
pub type UnixTime = i64;

/// The current unix time. Domain functions take time as an argument; only edges call this.
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Why a name was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what} name {name:?}: {reason}")]
pub struct NameError {
    /// Which kind of name.
    pub what: &'static str,
    /// The rejected input.
    pub name: String,
    /// What rule it broke.
    pub reason: &'static str,
}

/// Longest name accepted for accounts, users and roles.
pub const MAX_NAME_LEN: usize = 64;

fn normalize(what: &'static str, input: &str) -> Result<String, NameError> {
    let name = input.trim().to_ascii_lowercase();
    let err = |reason| NameError { what, name: input.to_string(), reason };
    if name.is_empty() {
        return Err(err("must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err("longer than 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(err("must start with a letter or digit"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(err("only letters, digits, '-', '_' and '.' are allowed"));
    }
    Ok(name)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        // Quoted like a string, so a name in a message reads "acme", never AccountName("acme").
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $ty {
            /// Validates and normalizes (trimmed, lower case).
            ///
            /// # Errors
            /// [`NameError`] naming the rule the input broke.
            pub fn new(input: &str) -> Result<Self, NameError> {
                normalize($what, input).map($ty)
            }

            /// The normalized name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(&s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An account name: 1-64 of `a-z 0-9 - _ .`, starting with a letter or digit.
    AccountName,
    "account"
);
name_type!(
    /// A user name, unique within its account; same rules as account names.
    UserName,
    "user"
);
name_type!(
    /// A role name, unique within its account; same rules as account names.
    RoleName,
    "role"
);

/// The trust root: operator identity and signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// Shown as the operator JWT's `name`.
    pub name: String,
    /// Signs only the operator JWT.
    pub identity: SealedKey,
    /// Signs account JWTs and claims-delete requests.
    pub signing_key: SealedKey,
    /// Public key of the SYS account.
    pub system_account: String,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// What an account is for; the first three are created by `init` and are not tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// nats-server's system account.
    System,
    /// The callout account: the service and sentinel users live here.
    Auth,
    /// Operators of nats-authd; the only account that reaches the management API.
    Admin,
    /// An application account.
    Tenant,
}

/// An account and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub name: AccountName,
    pub kind: AccountKind,
    #[serde(default)]
    pub description: String,
    pub active: bool,
    /// Identity key; its public half is the account's id on the servers.
    pub identity: SealedKey,
    /// Signing keys; the first signs new user JWTs.
    pub signing_keys: Vec<SealedKey>,
    /// Curve key for sealed callout requests (AUTH only, when enabled).
    #[serde(default)]
    pub xkey: Option<SealedKey>,
    pub limits: OperatorLimits,
    #[serde(default)]
    pub imports: Vec<Import>,
    #[serde(default)]
    pub exports: Vec<Export>,
    /// User public key -> unix time before which its JWTs are revoked.
    #[serde(default)]
    pub revocations: BTreeMap<String, i64>,
    /// User public key -> expiry of the last creds JWT issued for it, for revocations that
    /// may go once it has passed (see [`AccountRecord::revoke`]); a revocation without an
    /// entry here is kept for good. Not written while empty, so older records compare byte
    /// for byte.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations_expire: BTreeMap<String, UnixTime>,
    /// Role of users created without one.
    #[serde(default)]
    pub default_role: Option<RoleName>,
    /// A delete has begun: nothing may be added to it any more (see `delete_account`).
    #[serde(default)]
    pub deleting: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl AccountRecord {
    /// A new active account with fresh identity and signing keys, default limits, no
    /// imports or exports.
    pub fn new(name: AccountName, kind: AccountKind, master: &MasterKey, now: UnixTime) -> Self {
        AccountRecord {
            name,
            kind,
            description: String::new(),
            active: true,
            identity: SealedKey::generate(KeyRole::Account, master),
            signing_keys: vec![SealedKey::generate(KeyRole::AccountSigning, master)],
            xkey: None,
            limits: OperatorLimits::unlimited(),
            imports: Vec::new(),
            exports: Vec::new(),
            revocations: BTreeMap::new(),
            revocations_expire: BTreeMap::new(),
            default_role: None,
            deleting: false,
            created_at: now,
            updated_at: now,
        }
    }

    /// The account's public key.
    pub fn public_key(&self) -> &str {
        &self.identity.public
    }

    /// Revokes every JWT for `key` (dated [`REVOKED_AHEAD_SECS`] ahead), as long as one of
    /// them may still be valid, and drops the revocations no JWT needs any more. Returns
    /// whether anything changed (the account's JWT must then be written and pushed).
    ///
    /// Only creds JWTs carry a user's own key (callout JWTs are for the connection's key),
    /// so a key no creds were issued for needs no revocation, and one whose creds have all
    /// expired needs it only until then: without this, every user ever deactivated,
    /// deleted or regenerated stayed in the account's JWT, which grows toward the servers'
    /// max payload.
    pub fn revoke(&mut self, key: &str, issued: Option<CredsIssued>, now: UnixTime) -> bool {
        let mut changed = self.prune_revocations(now);
        let until = match issued.unwrap_or(CredsIssued::Lasting) {
            CredsIssued::Never => return changed,
            CredsIssued::Expiring(exp) if exp + REVOCATION_SLACK_SECS < now => return changed,
            CredsIssued::Expiring(exp) => Some(exp),
            CredsIssued::Lasting => None,
        };
        // The server refuses a JWT issued at or before the revocation's date. A revoked key is
        // never used again (reactivating or regenerating makes a new one), so the date is far
        // ahead: JWTs signed while this revocation commits (from a request that came later, or
        // a host whose clock is ahead), or later from a copy of the records that missed the
        // change (a JetStream deployment's local seed), are refused too.
        let at = now + REVOKED_AHEAD_SECS;
        let was = self.revocations.get(key).copied();
        if was.is_none_or(|was| was < at) {
            self.revocations.insert(key.to_string(), at);
            changed = true;
        }
        changed |= match until {
            // A later expiry than one recorded before can only come from the same key, whose
            // newest creds decide.
            Some(exp) => self.revocations_expire.insert(key.to_string(), exp) != Some(exp),
            None => self.revocations_expire.remove(key).is_some(),
        };
        changed
    }

    /// Drops the revocations of keys whose last creds expired more than
    /// [`REVOCATION_SLACK_SECS`] before `now`. Returns whether any went.
    pub fn prune_revocations(&mut self, now: UnixTime) -> bool {
        let before = self.revocations_expire.len();
        let revocations = &mut self.revocations;
        self.revocations_expire.retain(|key, exp| {
            let keep = *exp + REVOCATION_SLACK_SECS >= now;
            if !keep {
                revocations.remove(key);
            }
            keep
        });
        self.revocations_expire.len() != before
    }

    /// The key that signs this account's users: the first signing key, else the identity.
    pub fn user_signer(&self) -> &SealedKey {
        self.signing_keys.first().unwrap_or(&self.identity)
    }
}

/// A stored password hash (argon2id PHC string). Its `Debug` does not print it, so a logged
/// record cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string.
    pub fn new(phc: String) -> Self {
        PasswordHash(phc)
    }

    /// The PHC string, for verification.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What a user is for; decides where its permissions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    /// nats-authd's own connection in AUTH; an `auth_users` entry, so it bypasses the callout.
    Service,
    /// The AUTH user clients present to trigger the callout; may do nothing itself.
    Sentinel,
    /// An operator of the system, in ADMIN; full rights there.
    Admin,
    /// An application user; permissions come from its role.
    Member,
}

/// A login name: the tenant account whose user of that name has a password. Written and
/// removed in the same batch as the user's password, so a bare-name login reads one key and
/// two tenants cannot both claim a name (see `manage::logins`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecord {
    pub name: UserName,
    /// One account; several only for a name that tenants shared before login names were
    /// unique (kept by a store upgrade so that the name stays taken and logs in nobody).
    pub accounts: Vec<AccountName>,
}

/// A user of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub account: AccountName,
    pub name: UserName,
    pub kind: UserKind,
    #[serde(default)]
    pub role: Option<RoleName>,
    #[serde(default)]
    pub description: String,
    pub active: bool,
    /// The user's nkey; its seed is sealed.
    pub identity: SealedKey,
    /// argon2id PHC string; never leaves the store.
    #[serde(default)]
    pub password_hash: Option<PasswordHash>,
    /// Lifetime of issued JWTs in seconds; `None`: no expiry.
    #[serde(default)]
    pub jwt_ttl_secs: Option<i64>,
    /// Creds issued for `identity`, so that revoking it is kept only while they may be valid.
    /// `None`: not tracked (records of older builds and of `init`), read as
    /// [`CredsIssued::Lasting`]. Not written while `None`, so older records compare byte for
    /// byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds_issued: Option<CredsIssued>,
    #[serde(default)]
    pub bearer_token: bool,
    /// Free-form `key -> value` tags; role templates read them with `{{tag(key)}}`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl UserRecord {
    /// A new active user of `account` with a fresh nkey, no role, password or expiry.
    pub fn new(
        account: AccountName,
        name: UserName,
        kind: UserKind,
        master: &MasterKey,
        now: UnixTime,
    ) -> Self {
        UserRecord {
            account,
            name,
            kind,
            role: None,
            description: String::new(),
            active: true,
            identity: SealedKey::generate(KeyRole::User, master),
            password_hash: None,
            jwt_ttl_secs: None,
            creds_issued: None,
            bearer_token: false,
            tags: BTreeMap::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Store key: `account/name`.
    pub fn key_of(account: &AccountName, name: &UserName) -> String {
        format!("{account}/{name}")
    }

    /// When creds issued `now` expire: `now` plus the user's JWT lifetime, if it has one.
    pub fn creds_expiry(&self, now: UnixTime) -> Option<UnixTime> {
        self.jwt_ttl_secs.map(|ttl| now + ttl)
    }

    /// A new nkey, with no creds issued for it yet.
    pub fn new_key(&mut self, master: &MasterKey) {
        self.identity = SealedKey::generate(KeyRole::User, master);
        self.creds_issued = Some(CredsIssued::Never);
    }

    /// Records creds issued `now` for the current key. Returns whether the record changed
    /// (then it must be written before the creds are handed out).
    pub fn note_creds(&mut self, now: UnixTime) -> bool {
        let Some(issued) = self.creds_issued else { return false };
        let next = match (issued, self.creds_expiry(now)) {
            (CredsIssued::Lasting, _) | (_, None) => CredsIssued::Lasting,
            (CredsIssued::Never, Some(exp)) => CredsIssued::Expiring(exp),
            (CredsIssued::Expiring(was), Some(exp)) => CredsIssued::Expiring(was.max(exp)),
        };
        self.creds_issued = Some(next);
        next != issued
    }
}

/// How long a revocation outlives the last creds it covers, for clocks that differ between
/// the hosts of nats-authd and of the servers that check the expiry.
pub const REVOCATION_SLACK_SECS: i64 = 300;

/// How far ahead of its making a revocation is dated (100 years): it covers every JWT ever
/// signed for the key (see [`AccountRecord::revoke`]).
pub const REVOKED_AHEAD_SECS: i64 = 100 * 365 * 24 * 3600;

/// What creds JWTs were handed out for a user's current key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredsIssued {
    /// None yet.
    Never,
    /// The last of them expires at this unix time.
    Expiring(UnixTime),
    /// At least one without expiry.
    Lasting,
}

/// A named set of permissions and limits within an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub account: AccountName,
    pub name: RoleName,
    #[serde(default)]
    pub description: String,
    pub permissions: Permissions,
    /// Per-user subscription limit; -1 unlimited.
    pub subs: i64,
    /// Per-user data limit in bytes; -1 unlimited.
    pub data: i64,
    /// Per-user payload limit in bytes; -1 unlimited.
    pub payload: i64,
    /// A delete has begun: no user may be given it any more (see `delete_role`). Not written
    /// while false, so records of older versions compare byte for byte.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// What its users may do for themselves on `authd.self.*`; `None`: the defaults
    /// ([`SelfService::default`]). Not written while `None`, so older records compare byte
    /// for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_service: Option<SelfService>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// The self-service rights of a role's users (`authd.self.*`). Absent fields read as their
/// default: `whoami` and `creds` on (a user may always see itself and take its own creds for
/// direct connections), everything that changes state off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfService {
    /// `self.whoami`: who am I, with which permissions.
    pub whoami: bool,
    /// `self.creds`: my own creds file.
    pub creds: bool,
    /// `self.regenerate`: a new nkey for me, the old one revoked.
    pub regenerate: bool,
    /// `self.password`: change my own password (the current one required).
    pub password: bool,
    /// `self.token.*`: my own API tokens.
    pub tokens: bool,
    /// `self.admin.*`: manage the users, roles and tokens of my own account (a tenant admin).
    pub admin: bool,
}

impl Default for SelfService {
    fn default() -> Self {
        SelfService {
            whoami: true,
            creds: true,
            regenerate: false,
            password: false,
            tokens: false,
            admin: false,
        }
    }
}

impl RoleRecord {
    /// A role of `account` with these permissions, no description and no per-user limits.
    pub fn new(
        account: AccountName,
        name: RoleName,
        permissions: Permissions,
        now: UnixTime,
    ) -> Self {
        RoleRecord {
            account,
            name,
            description: String::new(),
            permissions,
            subs: crate::claims::NO_LIMIT,
            data: crate::claims::NO_LIMIT,
            payload: crate::claims::NO_LIMIT,
            deleting: false,
            self_service: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The self-service rights of its users.
    pub fn self_service(&self) -> SelfService {
        self.self_service.unwrap_or_default()
    }

    /// Store key: `account/name`.
    pub fn key_of(account: &AccountName, name: &RoleName) -> String {
        format!("{account}/{name}")
    }
}

/// An API token of a user: the public id, and a SHA-256 of the secret part.
///
/// Tokens are 256 random bits, so a fast hash is enough (no dictionary to attack); the
/// secret itself is shown once, when the token is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id, the part of the token before the secret.
    pub id: String,
    pub account: AccountName,
    pub user: UserName,
    #[serde(default)]
    pub description: String,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_at: UnixTime,
}

/// A committed change after which live callout connections must end now, not when their
/// JWT expires. Made by the management domain, acted on by the callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A user was deactivated, deleted, or given a new password.
    User { account: String, user: String },
    /// An account was deactivated or deleted.
    Account { account: String },
    /// An API token was revoked.
    Token { id: String },
}

/// Longest subject accepted in a permission or an import/export.
pub const MAX_SUBJECT_LEN: usize = 512;

/// A NATS subject or subject pattern: dot-separated non-empty tokens without white space,
/// `*` only as a whole token, `>` only as the whole last token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

/// Why a subject was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid subject {subject:?}: {reason}")]
pub struct SubjectError {
    /// The rejected input.
    pub subject: String,
    /// What rule it broke.
    pub reason: &'static str,
}

impl Subject {
    /// Validates a subject pattern.
    ///
    /// # Errors
    /// [`SubjectError`] naming the pattern and the rule it broke.
    pub fn new(input: &str) -> Result<Self, SubjectError> {
        let err = |reason| SubjectError { subject: input.to_string(), reason };
        if input.is_empty() {
            return Err(err("must not be empty"));
        }
        if input.len() > MAX_SUBJECT_LEN {
            return Err(err("longer than 512 bytes"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("must not contain white space"));
        }
        let tokens: Vec<&str> = input.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(err("has an empty token (leading, trailing or double dot)"));
            }
            if token.len() > 1 && token.contains(['*', '>']) {
                return Err(err("wildcards must be whole tokens"));
            }
            if *token == ">" && i + 1 != tokens.len() {
                return Err(err("'>' may only be the last token"));
            }
        }
        Ok(Subject(input.to_string()))
    }

    /// The subject text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether every subject matched by `other` is matched by `self` (an import of `other`
    /// fits an export of `self`).
    pub fn covers(&self, other: &Subject) -> bool {
        let mut mine = self.0.split('.');
        let mut theirs = other.0.split('.');
        loop {
            match (mine.next(), theirs.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(t)) if t != ">" => {}
                (Some(m), Some(t)) if m == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl Subject {
    /// Whether some subject matches both patterns (`a.*` and `*.b` share `a.b`).
    pub fn intersects(&self, other: &Subject) -> bool {
        let mut mine = self.0.split('.');
        let mut theirs = other.0.split('.');
        loop {
            match (mine.next(), theirs.next()) {
                (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
                (Some(m), Some(t)) if m == t || m == "*" || t == "*" => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl TryFrom<String> for Subject {
    type Error = SubjectError;
    fn try_from(s: String) -> Result<Self, SubjectError> {
        Subject::new(&s)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_validated() {
        assert_eq!(AccountName::new("  ACME ").unwrap().as_str(), "acme");
        assert_eq!(UserName::new("dev-1.eu_west").unwrap().as_str(), "dev-1.eu_west");
        for bad in ["", "-x", "a b", "a/b", "a*", "a>", &"x".repeat(65)] {
            assert!(AccountName::new(bad).is_err(), "{bad:?} should be rejected");
        }
        let json = serde_json::to_string(&AccountName::new("Acme").unwrap()).unwrap();
        assert_eq!(json, "\"acme\"");
        assert!(serde_json::from_str::<AccountName>("\"a b\"").is_err());
    }

    #[test]
    fn subjects_follow_nats_rules() {
        for good in [
            "a",
            "a.b",
            "a.*.c",
            "a.>",
            ">",
            "*",
            "$SYS.REQ.USER.INFO",
            "_INBOX.>",
            "user.{{name()}}.>",
        ] {
            assert!(Subject::new(good).is_ok(), "{good:?} should be accepted");
        }
        for bad in
            ["", ".a", "a.", "a..b", "a b", "a.>.b", "a*", "a.b*", ">a", "a.\tb", &"a".repeat(513)]
        {
            assert!(Subject::new(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn covers_is_subset_matching() {
        let s = |x| Subject::new(x).unwrap();
        assert!(s("a.>").covers(&s("a.b.c")));
        assert!(s("a.>").covers(&s("a.*")));
        assert!(s("a.*").covers(&s("a.b")));
        assert!(s("a.*").covers(&s("a.*")));
        assert!(!s("a.*").covers(&s("a.>")));
        assert!(!s("a.*").covers(&s("a.b.c")));
        assert!(!s("a.b").covers(&s("a.*")));
        assert!(s(">").covers(&s("x")));
        assert!(!s("a.b").covers(&s("a")));
    }

    #[test]
    fn names_print_as_quoted_text() {
        let name = AccountName::new("Auth").unwrap();
        assert_eq!(format!("{name:?}"), "\"auth\"");
        assert_eq!(format!("{name}"), "auth");
    }

    #[test]
    fn intersects_finds_any_shared_subject() {
        let s = |x| Subject::new(x).unwrap();
        assert!(s(">").intersects(&s("$SYS.>")));
        assert!(s("*.REQ.x").intersects(&s("$SYS.>")));
        assert!(s("a.*").intersects(&s("*.b")));
        assert!(s("$SRV.PING").intersects(&s("$SRV.>")));
        assert!(!s("$SRV").intersects(&s("$SRV.>")), "'>' needs one more token");
        assert!(!s("orders.>").intersects(&s("$SYS.>")));
        assert!(!s("a.b").intersects(&s("a.c")));
        assert!(!s("a.*").intersects(&s("a.b.c")));
    }

    fn user(master: &MasterKey, ttl: Option<i64>) -> UserRecord {
        let mut user = UserRecord::new(
            AccountName::new("acme").unwrap(),
            UserName::new("dev1").unwrap(),
            UserKind::Member,
            master,
            0,
        );
        user.jwt_ttl_secs = ttl;
        user.new_key(master);
        user
    }

    #[test]
    fn issued_creds_are_noted_with_their_latest_expiry_and_lasting_ones_win() {
        let master = MasterKey::generate();
        let mut expiring = user(&master, Some(60));
        assert!(expiring.note_creds(1000));
        assert_eq!(expiring.creds_issued, Some(CredsIssued::Expiring(1060)));
        assert!(!expiring.note_creds(990), "an earlier expiry replaced a later one");
        assert_eq!(expiring.creds_issued, Some(CredsIssued::Expiring(1060)));
        assert!(expiring.note_creds(2000));
        assert_eq!(expiring.creds_issued, Some(CredsIssued::Expiring(2060)));
        // The lifetime taken away: creds without expiry now exist.
        expiring.jwt_ttl_secs = None;
        assert!(expiring.note_creds(2001));
        assert_eq!(expiring.creds_issued, Some(CredsIssued::Lasting));
        expiring.jwt_ttl_secs = Some(60);
        assert!(!expiring.note_creds(3000), "lasting creds were forgotten");

        let mut untracked = user(&master, Some(60));
        untracked.creds_issued = None;
        assert!(!untracked.note_creds(1000));
        assert_eq!(untracked.creds_issued, None);

        untracked.new_key(&master);
        assert_eq!(untracked.creds_issued, Some(CredsIssued::Never), "a new key has no creds");
    }

    #[test]
    fn a_revocation_lasts_as_long_as_the_creds_it_covers() {
        let master = MasterKey::generate();
        let mut account =
            AccountRecord::new(AccountName::new("acme").unwrap(), AccountKind::Tenant, &master, 0);
        // No creds, or only expired ones: nothing to revoke, nothing written.
        assert!(!account.revoke("UNEVER", Some(CredsIssued::Never), 1000));
        let stale = 1000 - REVOCATION_SLACK_SECS - 1;
        assert!(!account.revoke("USTALE", Some(CredsIssued::Expiring(stale)), 1000));
        assert!(account.revocations.is_empty());
        // Creds that may still be valid (within the slack too), lasting ones, untracked keys.
        let skewed = 1000 - REVOCATION_SLACK_SECS;
        assert!(account.revoke("USKEW", Some(CredsIssued::Expiring(skewed)), 1000));
        assert!(account.revoke("UHOUR", Some(CredsIssued::Expiring(4600)), 1000));
        assert!(account.revoke("ULAST", Some(CredsIssued::Lasting), 1000));
        assert!(account.revoke("UOLD", None, 1000));
        let keys = |a: &AccountRecord| a.revocations.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&account), ["UHOUR", "ULAST", "UOLD", "USKEW"]);
        // Dated far ahead; a later revocation of the same key never moves it back.
        let ahead = 1000 + REVOKED_AHEAD_SECS;
        assert!(account.revocations.values().all(|at| *at == ahead));
        assert!(!account.revoke("UHOUR", Some(CredsIssued::Expiring(4600)), 1000), "no change");
        assert!(!account.revoke("ULAST", Some(CredsIssued::Lasting), 900), "moved back");
        assert_eq!(account.revocations["ULAST"], ahead);

        // Once their creds are past the slack, the next change drops them; lasting ones stay.
        assert!(account.prune_revocations(1001));
        assert_eq!(keys(&account), ["UHOUR", "ULAST", "UOLD"]);
        assert!(!account.prune_revocations(4600 + REVOCATION_SLACK_SECS));
        assert!(account.revoke("UNEVER", Some(CredsIssued::Never), 4601 + REVOCATION_SLACK_SECS));
        assert_eq!(keys(&account), ["ULAST", "UOLD"]);
        assert!(account.revocations_expire.is_empty());

        // Lasting creds issued later for a key with an expiring revocation keep it for good.
        assert!(account.revoke("UBOTH", Some(CredsIssued::Expiring(9000)), 8000));
        assert!(account.revoke("UBOTH", Some(CredsIssued::Lasting), 8000));
        assert!(!account.prune_revocations(99_999));
        assert!(account.revocations.contains_key("UBOTH"));
    }

    #[test]
    fn records_without_the_new_fields_read_back_byte_for_byte() {
        let master = MasterKey::generate();
        let mut user = user(&master, None);
        user.creds_issued = None;
        let old = serde_json::to_string(&user).unwrap();
        assert!(!old.contains("creds_issued"));
        let back: UserRecord = serde_json::from_str(&old).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), old);
        let account =
            AccountRecord::new(AccountName::new("acme").unwrap(), AccountKind::Tenant, &master, 0);
        assert!(!serde_json::to_string(&account).unwrap().contains("revocations_expire"));
    }
}
