//! `self.*`: what a tenant user may do for itself, and `self.admin.*`: what a tenant admin may
//! do within its own account.
//!
//! No request here names the caller's account or user: both are taken from the
//! `Nats-Request-Info` header nats-server writes on the tenant's shared import of
//! `authd.self.>` (see [`crate::service::selfservice`]). A field naming an account is an
//! unknown field, so a payload can never point a request at another account.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::role::{PermissionInput, ResponseInput, RoleLimitsInput, RoleView};
use super::token::{TokenCreated, TokenView};
use super::user::{CredsView, Password, UserView};
use super::{ApiRequest, Endpoint, Page};
use crate::claims::Permissions;
use crate::model::{RoleName, SelfService, UnixTime, UserName};

/// How the caller's connection logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginVia {
    /// A creds file: the user's own nkey and a JWT nats-authd signed for it.
    Creds,
    /// User/password or an API token, through the auth callout.
    Callout,
}

/// `self.whoami`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {}

/// Who the caller is, as nats-authd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmIView {
    pub account: String,
    pub user: String,
    /// The user's own nkey (what its creds connect as).
    pub public_key: String,
    pub role: Option<String>,
    /// The role's permissions as this user's creds carry them (templates resolved; for a
    /// callout login `{{subject()}}` resolves per connection, so it may differ there).
    pub permissions: Permissions,
    pub login: LoginVia,
    /// When the JWT of this connection expires, if known (creds logins; `None` for callout
    /// logins, whose JWT the server does not show, and for JWTs without expiry).
    pub jwt_expires_at: Option<UnixTime>,
    /// What the caller may do on `authd.self.*`.
    pub self_service: SelfService,
    /// Whether the caller is an admin of its own account (`self.admin.*`).
    pub tenant_admin: bool,
}

/// `self.creds` and `self.regenerate`: optionally sealed to the client's curve key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfCreds {
    /// A curve public key (`X...`): the reply is then [`SealedReply`], readable only with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xkey: Option<String>,
}

/// `self.regenerate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SelfRegenerate(pub SelfCreds);

/// A reply sealed to the client's xkey: `sealed` is base64 (standard, padded) of
/// `XKey::seal(json, client_xkey)` by the one-time sender key `sender`; it opens, with the
/// client's xkey seed and `sender`, to the JSON of the plain reply ([`CredsView`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedReply {
    pub sealed: String,
    pub sender: String,
}

/// The reply of `self.creds` and `self.regenerate`: sealed when the request named an xkey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SelfCredsReply {
    Sealed(SealedReply),
    Plain(CredsView),
}

/// `self.password`: the current password is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current: Password,
    pub new: Password,
}

/// `self.token.create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfCreateToken {
    #[serde(default)]
    pub description: Option<String>,
}

/// `self.token.list`: one page of the caller's tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfListTokens {
    /// Most items in the answer (default 500, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `self.token.revoke` and `self.admin.token.revoke`: a token of the caller (of its account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfRevokeToken {
    pub id: String,
}

/// `self.admin.user.list`: one page of the users of the caller's own account (never another's:
/// a cursor from outside it is refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantListUsers {
    /// Most items in the answer (default 500, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `self.admin.role.list`: one page of the roles of the caller's own account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantListRoles {
    /// Most items in the answer (default 500, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `self.admin.user.create`: `user.create` without the account (it is the caller's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreateUser {
    pub name: UserName,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub password: Option<Password>,
    #[serde(default)]
    pub jwt_ttl_secs: Option<i64>,
    #[serde(default)]
    pub bearer_token: Option<bool>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `self.admin.user.update`: `user.update` without the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdateUser {
    pub name: UserName,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub password: Option<Password>,
    #[serde(default)]
    pub jwt_ttl_secs: Option<i64>,
    #[serde(default)]
    pub bearer_token: Option<bool>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `self.admin.user.delete` and `self.admin.user.regenerate`: a user of the caller's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUserRef {
    pub name: UserName,
}

/// `self.admin.role.create`: `role.create` without the account, and without self-service
/// rights (only an operator grants those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreateRole {
    pub name: RoleName,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub publish: PermissionInput,
    #[serde(default)]
    pub subscribe: PermissionInput,
    #[serde(default)]
    pub response: Option<ResponseInput>,
    #[serde(default)]
    pub limits: Option<RoleLimitsInput>,
}

/// `self.admin.role.update`: `role.update` without the account and self-service rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdateRole {
    pub name: RoleName,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub publish: Option<PermissionInput>,
    #[serde(default)]
    pub subscribe: Option<PermissionInput>,
    #[serde(default)]
    pub response: Option<ResponseInput>,
    #[serde(default)]
    pub limits: Option<RoleLimitsInput>,
}

/// `self.admin.role.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRoleRef {
    pub name: RoleName,
}

/// `self.admin.token.create`: a token for a user of the caller's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreateToken {
    pub user: UserName,
    #[serde(default)]
    pub description: Option<String>,
}

/// `self.admin.token.list`: one page of the tokens of the caller's account (of one user, if
/// `user` is given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantListTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserName>,
    /// Most items in the answer (default 500, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

macro_rules! api {
    ($($request:ty => $endpoint:ident, $reply:ty;)*) => {$(
        impl ApiRequest for $request {
            const ENDPOINT: Endpoint = Endpoint::$endpoint;
            type Reply = $reply;
        }
    )*};
}

api! {
    WhoAmI => SelfWhoami, WhoAmIView;
    SelfCreds => SelfCredsGet, SelfCredsReply;
    SelfRegenerate => SelfRegenerate, SelfCredsReply;
    ChangePassword => SelfPassword, UserView;
    SelfCreateToken => SelfTokenCreate, TokenCreated;
    SelfListTokens => SelfTokenList, Page<TokenView>;
    SelfRevokeToken => SelfTokenRevoke, TokenView;
    TenantCreateUser => SelfAdminUserCreate, UserView;
    TenantUpdateUser => SelfAdminUserUpdate, UserView;
    TenantUserRef => SelfAdminUserDelete, UserView;
    TenantCreateRole => SelfAdminRoleCreate, RoleView;
    TenantUpdateRole => SelfAdminRoleUpdate, RoleView;
    TenantRoleRef => SelfAdminRoleDelete, RoleView;
    TenantCreateToken => SelfAdminTokenCreate, TokenCreated;
    TenantListUsers => SelfAdminUserList, Page<UserView>;
    TenantListRoles => SelfAdminRoleList, Page<RoleView>;
    TenantListTokens => SelfAdminTokenList, Page<TokenView>;
}

super::paged! {
    SelfListTokens => TokenView;
    TenantListUsers => UserView;
    TenantListRoles => RoleView;
    TenantListTokens => TokenView;
}
