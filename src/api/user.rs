//! `user.*`: users of tenant accounts (and of ADMIN).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{requests, ApiRequest, Endpoint};
use crate::model::{AccountName, AccountRecord, UnixTime, UserKind, UserName, UserRecord};

/// A password as a request carries it: wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(text: impl Into<String>) -> Self {
        Password(Zeroizing::new(text.into()))
    }

    /// The password text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// `user.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub account: AccountName,
    pub name: UserName,
    /// Role name; default: the account's default role.
    pub role: Option<String>,
    pub description: Option<String>,
    /// For callout logins; stored only as an argon2id hash.
    pub password: Option<Password>,
    /// Lifetime of issued JWTs in seconds; absent or `0`: no expiry.
    pub jwt_ttl_secs: Option<i64>,
    /// Issue bearer JWTs (no nonce signature needed to connect).
    pub bearer_token: Option<bool>,
    /// Tags for role templates (`{{tag(key)}}`).
    pub tags: Option<BTreeMap<String, String>>,
}

/// `user.update`: absent fields are left as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub account: AccountName,
    pub name: UserName,
    /// New role; `""` falls back to the account's default role.
    pub role: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
    /// New password; `""` removes it.
    pub password: Option<Password>,
    /// New JWT lifetime; `0` removes it (no expiry).
    pub jwt_ttl_secs: Option<i64>,
    pub bearer_token: Option<bool>,
    /// Replaces the tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Read-only fields of [`UserView`]: accepted so a `get` can be sent back, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<UserKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_password: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<UnixTime>,
}

/// `user.get` (and, wrapped, `user.delete`, `user.regenerate`, `user.creds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    pub account: AccountName,
    pub name: UserName,
}

impl UserRef {
    /// The user `name` of `account`.
    pub fn new(account: AccountName, name: UserName) -> Self {
        UserRef { account, name }
    }
}

/// `user.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeleteUser(pub UserRef);

/// `user.regenerate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegenerateUser(pub UserRef);

/// `user.creds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GetCreds(pub UserRef);

/// `user.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserListRef {
    pub account: AccountName,
    /// Most items in the answer (default 500, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    pub cursor: Option<String>,
}

impl UserListRef {
    /// The first page of `account`'s users.
    pub fn new(account: AccountName) -> Self {
        UserListRef { account, limit: None, cursor: None }
    }
}

/// A user as the API shows it (no seed, no hash), in the shape `user.update` takes: the
/// fields of [`UpdateUser`] (but the password) with the same names, plus the read-only
/// `public_key`, `kind`, `has_password`, `created_at` and `updated_at`, which `update`
/// accepts and ignores. So a `get`, edited, is a valid `update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub account: String,
    pub name: String,
    /// `null`: none (its account's default role at login, if any).
    pub role: Option<String>,
    pub description: String,
    pub active: bool,
    /// `null`: JWTs without expiry.
    pub jwt_ttl_secs: Option<i64>,
    pub bearer_token: bool,
    pub tags: BTreeMap<String, String>,
    /// Read-only.
    pub public_key: String,
    /// Read-only.
    pub kind: UserKind,
    /// Read-only.
    pub has_password: bool,
    /// Read-only.
    pub created_at: UnixTime,
    /// Read-only.
    pub updated_at: UnixTime,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            account: u.account.to_string(),
            name: u.name.to_string(),
            public_key: u.identity.public.clone(),
            kind: u.kind,
            role: u.role.as_ref().map(ToString::to_string),
            description: u.description.clone(),
            active: u.active,
            has_password: u.password_hash.is_some(),
            jwt_ttl_secs: u.jwt_ttl_secs,
            bearer_token: u.bearer_token,
            tags: u.tags.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A user's creds file (the one response that carries a seed: the user's own).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredsView {
    pub account: String,
    pub name: String,
    pub public_key: String,
    pub creds: String,
}

impl std::fmt::Debug for CredsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredsView")
            .field("account", &self.account)
            .field("name", &self.name)
            .field("public_key", &self.public_key)
            .field("creds", &"<redacted>")
            .finish()
    }
}

impl CredsView {
    /// The view of `creds` issued for `user` of `account`.
    pub fn new(account: &AccountRecord, user: &UserRecord, creds: &str) -> Self {
        CredsView {
            account: account.name.to_string(),
            name: user.name.to_string(),
            public_key: user.identity.public.clone(),
            creds: creds.to_string(),
        }
    }
}

impl CreateUser {
    /// A request for user `name` of `account` with nothing else set.
    pub fn new(account: AccountName, name: UserName) -> Self {
        CreateUser {
            account,
            name,
            role: None,
            description: None,
            password: None,
            jwt_ttl_secs: None,
            bearer_token: None,
            tags: None,
        }
    }
}

impl UpdateUser {
    /// A request that changes nothing yet: set the fields to change.
    pub fn new(account: AccountName, name: UserName) -> Self {
        UpdateUser {
            account,
            name,
            role: None,
            description: None,
            active: None,
            password: None,
            jwt_ttl_secs: None,
            bearer_token: None,
            tags: None,
            public_key: None,
            kind: None,
            has_password: None,
            created_at: None,
            updated_at: None,
        }
    }
}

impl ApiRequest for UpdateUser {
    const ENDPOINT: Endpoint = Endpoint::UserUpdate;
    type Reply = UserView;
    // Deactivation revokes the user's key in the account JWT.
    fn pushed_account(&self) -> Option<&AccountName> {
        self.active.map(|_| &self.account)
    }
}

impl ApiRequest for DeleteUser {
    const ENDPOINT: Endpoint = Endpoint::UserDelete;
    type Reply = UserView;
    fn pushed_account(&self) -> Option<&AccountName> {
        Some(&self.0.account)
    }
}

impl ApiRequest for RegenerateUser {
    const ENDPOINT: Endpoint = Endpoint::UserRegenerate;
    type Reply = CredsView;
    fn pushed_account(&self) -> Option<&AccountName> {
        Some(&self.0.account)
    }
}

requests! {
    CreateUser => UserCreate, UserView;
    UserRef => UserGet, UserView;
    UserListRef => UserList, super::Page<UserView>;
    GetCreds => UserCreds, CredsView;
}

super::paged! {
    UserListRef => UserView;
}
