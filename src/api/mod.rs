//! The management API as types: one table of endpoints, and the request and reply of each.
//!
//! The service, the client, the CLI and the tests all speak through these types, so a field
//! renamed here is renamed everywhere, and a request is built as a value, not as JSON text.
//! Name fields are the validated name types: a request that decodes names valid records.
//!
//! Wire conventions (every endpoint): the request is a JSON object (an empty body reads as
//! `{}`), unknown fields are refused, an optional field may be absent or `null`; a reply is the JSON of the reply type, or
//! `{"error":{"code","kind","message"}}` with the same code and message in the
//! `Nats-Service-Error-Code` and `Nats-Service-Error` headers (see `service::reply`).

pub mod account;
pub mod ops;
pub mod role;
pub mod selfservice;
pub mod token;
pub mod user;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::AccountName;

/// Every endpoint, by the subject it answers under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    AccountCreate,
    AccountGet,
    AccountList,
    AccountUpdate,
    AccountDelete,
    UserCreate,
    UserGet,
    UserList,
    UserUpdate,
    UserDelete,
    UserRegenerate,
    UserCreds,
    RoleCreate,
    RoleGet,
    RoleList,
    RoleUpdate,
    RoleDelete,
    OperatorGet,
    OperatorSysCreds,
    Status,
    PendingList,
    PendingRetry,
    TokenCreate,
    TokenList,
    TokenRevoke,
    SelfWhoami,
    SelfCredsGet,
    SelfRegenerate,
    SelfPassword,
    SelfTokenCreate,
    SelfTokenList,
    SelfTokenRevoke,
    SelfAdminUserList,
    SelfAdminUserCreate,
    SelfAdminUserUpdate,
    SelfAdminUserDelete,
    SelfAdminUserRegenerate,
    SelfAdminRoleList,
    SelfAdminRoleCreate,
    SelfAdminRoleUpdate,
    SelfAdminRoleDelete,
    SelfAdminTokenCreate,
    SelfAdminTokenList,
    SelfAdminTokenRevoke,
}

/// What the table says of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The subject below the prefix, e.g. `account.create`.
    pub subject: &'static str,
    /// Whether it changes state (so a retry must not apply it twice).
    pub changes: bool,
    /// One line for `$SRV.INFO` and `--help`.
    pub description: &'static str,
    /// Name of the request type, for `$SRV.INFO` metadata.
    pub request: &'static str,
    /// Name of the reply type, for `$SRV.INFO` metadata.
    pub reply: &'static str,
}

const fn info(
    subject: &'static str,
    changes: bool,
    description: &'static str,
    request: &'static str,
    reply: &'static str,
) -> EndpointInfo {
    EndpointInfo { subject, changes, description, request, reply }
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 44] = [
        Endpoint::AccountCreate,
        Endpoint::AccountGet,
        Endpoint::AccountList,
        Endpoint::AccountUpdate,
        Endpoint::AccountDelete,
        Endpoint::UserCreate,
        Endpoint::UserGet,
        Endpoint::UserList,
        Endpoint::UserUpdate,
        Endpoint::UserDelete,
        Endpoint::UserRegenerate,
        Endpoint::UserCreds,
        Endpoint::RoleCreate,
        Endpoint::RoleGet,
        Endpoint::RoleList,
        Endpoint::RoleUpdate,
        Endpoint::RoleDelete,
        Endpoint::OperatorGet,
        Endpoint::OperatorSysCreds,
        Endpoint::Status,
        Endpoint::PendingList,
        Endpoint::PendingRetry,
        Endpoint::TokenCreate,
        Endpoint::TokenList,
        Endpoint::TokenRevoke,
        Endpoint::SelfWhoami,
        Endpoint::SelfCredsGet,
        Endpoint::SelfRegenerate,
        Endpoint::SelfPassword,
        Endpoint::SelfTokenCreate,
        Endpoint::SelfTokenList,
        Endpoint::SelfTokenRevoke,
        Endpoint::SelfAdminUserList,
        Endpoint::SelfAdminUserCreate,
        Endpoint::SelfAdminUserUpdate,
        Endpoint::SelfAdminUserDelete,
        Endpoint::SelfAdminUserRegenerate,
        Endpoint::SelfAdminRoleList,
        Endpoint::SelfAdminRoleCreate,
        Endpoint::SelfAdminRoleUpdate,
        Endpoint::SelfAdminRoleDelete,
        Endpoint::SelfAdminTokenCreate,
        Endpoint::SelfAdminTokenList,
        Endpoint::SelfAdminTokenRevoke,
    ];

    /// The table row of this endpoint.
    pub const fn info(self) -> EndpointInfo {
        use Endpoint as E;
        match self {
            E::AccountCreate => info(
                "account.create",
                true,
                "Create a tenant account",
                "CreateAccount",
                "AccountView",
            ),
            E::AccountGet => {
                info("account.get", false, "Show one account", "AccountRef", "AccountView")
            }
            E::AccountList => info(
                "account.list",
                false,
                "List every account",
                "ListAccounts",
                "Page<AccountView>",
            ),
            E::AccountUpdate => info(
                "account.update",
                true,
                "Change a tenant account; absent fields stay",
                "UpdateAccount",
                "AccountView",
            ),
            E::AccountDelete => info(
                "account.delete",
                true,
                "Delete a tenant account (cascade: with its users and roles)",
                "DeleteAccount",
                "Deleted",
            ),
            E::UserCreate => info(
                "user.create",
                true,
                "Create a user with a fresh nkey",
                "CreateUser",
                "UserView",
            ),
            E::UserGet => info("user.get", false, "Show one user", "UserRef", "UserView"),
            E::UserList => info(
                "user.list",
                false,
                "List the users of an account",
                "UserListRef",
                "Page<UserView>",
            ),
            E::UserUpdate => info(
                "user.update",
                true,
                "Change a user; absent fields stay",
                "UpdateUser",
                "UserView",
            ),
            E::UserDelete => {
                info("user.delete", true, "Delete a user and revoke its key", "UserRef", "UserView")
            }
            E::UserRegenerate => info(
                "user.regenerate",
                true,
                "Give a user a new nkey, revoke the old one, return creds",
                "UserRef",
                "CredsView",
            ),
            E::UserCreds => info(
                "user.creds",
                false,
                "A creds file for a user, signed now",
                "UserRef",
                "CredsView",
            ),
            E::RoleCreate => info("role.create", true, "Create a role", "CreateRole", "RoleView"),
            E::RoleGet => info("role.get", false, "Show one role", "RoleRef", "RoleView"),
            E::RoleList => info(
                "role.list",
                false,
                "List the roles of an account",
                "RoleListRef",
                "Page<RoleView>",
            ),
            E::RoleUpdate => info(
                "role.update",
                true,
                "Change a role; absent fields stay",
                "UpdateRole",
                "RoleView",
            ),
            E::RoleDelete => {
                info("role.delete", true, "Delete a role no user holds", "RoleRef", "RoleView")
            }
            E::OperatorGet => {
                info("operator.get", false, "The operator's keys and JWT", "Empty", "OperatorView")
            }
            E::OperatorSysCreds => info(
                "operator.sys_creds",
                true,
                "Creds of a system-account user, for `nats server list/report/ping`",
                "SysCreds",
                "CredsView",
            ),
            E::Status => info(
                "status",
                false,
                "Connection, store, queue and callout counters",
                "Empty",
                "Status",
            ),
            E::PendingList => info(
                "pending.list",
                false,
                "Queued and failed account pushes",
                "ListPending",
                "Page<PendingUpdate>",
            ),
            E::PendingRetry => {
                info("pending.retry", true, "Queue failed pushes again", "RetryRequest", "Retried")
            }
            E::TokenCreate => info(
                "token.create",
                true,
                "Make an API token; its secret is shown once",
                "CreateToken",
                "TokenCreated",
            ),
            E::TokenList => info(
                "token.list",
                false,
                "List tokens, never their secrets",
                "ListTokens",
                "Page<TokenView>",
            ),
            E::TokenRevoke => info(
                "token.revoke",
                true,
                "Revoke a token and end its connections",
                "RevokeToken",
                "TokenView",
            ),
            E::SelfWhoami => info(
                "self.whoami",
                false,
                "Who the caller is: account, user, role, permissions, login",
                "WhoAmI",
                "WhoAmIView",
            ),
            E::SelfCredsGet => info(
                "self.creds",
                false,
                "The caller's own creds, signed now (sealed to `xkey` if given)",
                "SelfCreds",
                "SelfCredsReply",
            ),
            E::SelfRegenerate => info(
                "self.regenerate",
                true,
                "A new nkey for the caller, the old one revoked; its creds",
                "SelfRegenerate",
                "SelfCredsReply",
            ),
            E::SelfPassword => info(
                "self.password",
                true,
                "Change the caller's password; the current one is required",
                "ChangePassword",
                "UserView",
            ),
            E::SelfTokenCreate => info(
                "self.token.create",
                true,
                "An API token for the caller; its secret is shown once",
                "SelfCreateToken",
                "TokenCreated",
            ),
            E::SelfTokenList => info(
                "self.token.list",
                false,
                "The caller's API tokens, never their secrets",
                "SelfListTokens",
                "Page<TokenView>",
            ),
            E::SelfTokenRevoke => info(
                "self.token.revoke",
                true,
                "Revoke one of the caller's tokens",
                "SelfRevokeToken",
                "TokenView",
            ),
            E::SelfAdminUserList => info(
                "self.admin.user.list",
                false,
                "Tenant admin: the users of its account",
                "TenantListUsers",
                "Page<UserView>",
            ),
            E::SelfAdminUserCreate => info(
                "self.admin.user.create",
                true,
                "Tenant admin: create a user in its account",
                "TenantCreateUser",
                "UserView",
            ),
            E::SelfAdminUserUpdate => info(
                "self.admin.user.update",
                true,
                "Tenant admin: change a user of its account",
                "TenantUpdateUser",
                "UserView",
            ),
            E::SelfAdminUserDelete => info(
                "self.admin.user.delete",
                true,
                "Tenant admin: delete a user of its account",
                "TenantUserRef",
                "UserView",
            ),
            E::SelfAdminUserRegenerate => info(
                "self.admin.user.regenerate",
                true,
                "Tenant admin: new nkey for a user of its account",
                "TenantUserRef",
                "CredsView",
            ),
            E::SelfAdminRoleList => info(
                "self.admin.role.list",
                false,
                "Tenant admin: the roles of its account",
                "TenantListRoles",
                "Page<RoleView>",
            ),
            E::SelfAdminRoleCreate => info(
                "self.admin.role.create",
                true,
                "Tenant admin: create a role in its account",
                "TenantCreateRole",
                "RoleView",
            ),
            E::SelfAdminRoleUpdate => info(
                "self.admin.role.update",
                true,
                "Tenant admin: change a role of its account",
                "TenantUpdateRole",
                "RoleView",
            ),
            E::SelfAdminRoleDelete => info(
                "self.admin.role.delete",
                true,
                "Tenant admin: delete a role of its account",
                "TenantRoleRef",
                "RoleView",
            ),
            E::SelfAdminTokenCreate => info(
                "self.admin.token.create",
                true,
                "Tenant admin: an API token for a user of its account",
                "TenantCreateToken",
                "TokenCreated",
            ),
            E::SelfAdminTokenList => info(
                "self.admin.token.list",
                false,
                "Tenant admin: the API tokens of its account",
                "TenantListTokens",
                "Page<TokenView>",
            ),
            E::SelfAdminTokenRevoke => info(
                "self.admin.token.revoke",
                true,
                "Tenant admin: revoke a token of its account",
                "SelfRevokeToken",
                "TokenView",
            ),
        }
    }

    /// The subject below the prefix, e.g. `account.create`.
    pub const fn subject(self) -> &'static str {
        self.info().subject
    }

    /// Whether it changes state (and so must not be applied twice on a retry).
    pub const fn is_change(self) -> bool {
        self.info().changes
    }

    /// Whether it is a self-service endpoint (`self.*`): answered only for users of tenant
    /// accounts, identified by the server's `Nats-Request-Info` header, never by the payload.
    pub fn is_self_service(self) -> bool {
        self.subject().starts_with("self.")
    }

    /// The endpoint answering `subject` (below the prefix).
    pub fn from_subject(subject: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.subject() == subject)
    }
}

/// Binds request types to their endpoint and reply: `Request => Endpoint, Reply;` each.
macro_rules! requests {
    ($($request:ty => $endpoint:ident, $reply:ty;)*) => {
        $(impl $crate::api::ApiRequest for $request {
            const ENDPOINT: $crate::api::Endpoint = $crate::api::Endpoint::$endpoint;
            type Reply = $reply;
        })*
    };
}
pub(crate) use requests;

/// A request of the API: which endpoint takes it and what it answers.
pub trait ApiRequest: Serialize {
    /// The endpoint.
    const ENDPOINT: Endpoint;
    /// What a successful reply decodes as.
    type Reply: DeserializeOwned;

    /// The account whose JWT this change pushes to the servers, if any: a client that wants
    /// to use the change at once (connect with new creds) waits for that push.
    fn pushed_account(&self) -> Option<&AccountName> {
        None
    }
}

/// Items in a list page when the request names no `limit`.
pub const DEFAULT_PAGE: u32 = 500;
/// Most items a list request may ask for in one page.
pub const MAX_PAGE: u32 = 1000;

/// One page of a list: every `*.list` endpoint answers this. `next` is the cursor for the
/// following page (send it back as `cursor`), absent on the last page. A page may hold fewer
/// items than `limit` (never more): the service keeps each reply under the server's max
/// payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A list request: it answers [`Page`]s and takes the `cursor` of the next one, so a client
/// can follow pages (`AdminClient::list_all`).
pub trait PagedRequest: ApiRequest<Reply = Page<Self::Item>> + Clone {
    /// What the pages hold.
    type Item: DeserializeOwned;
    /// Where the request keeps its cursor.
    fn cursor_mut(&mut self) -> &mut Option<String>;
}

/// Implements [`PagedRequest`] for list requests with `cursor` fields: `Request => Item;`.
macro_rules! paged {
    ($($request:ty => $item:ty;)*) => {
        $(impl $crate::api::PagedRequest for $request {
            type Item = $item;
            fn cursor_mut(&mut self) -> &mut Option<String> {
                &mut self.cursor
            }
        })*
    };
}
pub(crate) use paged;

/// An empty request: list endpoints take no input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A reply with nothing to say but success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoReply {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_its_own_subject_and_a_description() {
        let mut subjects = std::collections::HashSet::new();
        for e in Endpoint::ALL {
            assert!(subjects.insert(e.subject()), "{e:?} shares its subject");
            assert_eq!(Endpoint::from_subject(e.subject()), Some(e));
            assert!(!e.info().description.is_empty());
            let reads = e.subject().ends_with(".get") || e.subject().ends_with(".list");
            assert!(!(reads && e.is_change()), "{e:?} reads but is marked as a change");
            if e.subject().ends_with(".list") {
                assert!(e.info().reply.starts_with("Page<"), "{e:?} lists without pages");
            }
        }
    }
}
