//! `role.*`: named permission sets within a tenant account.

use serde::{Deserialize, Serialize};

use super::requests;
use crate::claims::{Permission, ResponsePermission};
use crate::model::{AccountName, AccountRecord, RoleName, RoleRecord, SelfService, UnixTime};

/// Allow and deny lists of one direction. In an update, a list is replaced only when given:
/// `{"deny":["x"]}` leaves the allow list as it was (so an edit never widens by accident).
/// In a create, an absent list is empty. An empty allow list allows everything in that
/// direction (nats-server's rule), so a role that must allow nothing denies `>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionInput {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    /// Subjects added to the allow list (after `allow`, if given, replaced it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_allow: Option<Vec<String>>,
    /// Subjects taken out of the allow list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_allow: Option<Vec<String>>,
    /// Subjects added to the deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_deny: Option<Vec<String>>,
    /// Subjects taken out of the deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_deny: Option<Vec<String>>,
}

impl PermissionInput {
    /// Both lists given.
    pub fn lists(allow: &[&str], deny: &[&str]) -> Self {
        let owned = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        PermissionInput { allow: owned(allow), deny: owned(deny), ..PermissionInput::default() }
    }
}

impl PermissionInput {
    /// The API shape of stored lists: both given, so sending it back replaces nothing.
    pub fn of(p: &Permission) -> Self {
        PermissionInput {
            allow: Some(p.allow.clone()),
            deny: Some(p.deny.clone()),
            ..PermissionInput::default()
        }
    }
}

/// Permission to answer requests: how many replies, for how long. One shape both ways
/// (the JWT's nanosecond `ttl` never reaches the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseInput {
    pub max: i64,
    /// Milliseconds; 0: no time limit.
    #[serde(default)]
    pub ttl_ms: i64,
}

impl ResponseInput {
    /// The API shape of a stored response permission.
    pub fn of(r: &ResponsePermission) -> Self {
        ResponseInput { max: r.max_msgs, ttl_ms: r.ttl_nanos / 1_000_000 }
    }
}

/// Per-user limits of a role, one shape both ways (nested under `limits`); `-1` is
/// unlimited; in an update an absent field stays as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleLimits {
    pub subs: Option<i64>,
    pub data: Option<i64>,
    pub payload: Option<i64>,
}

/// The old name of [`RoleLimits`], kept so callers written against it still build.
pub type RoleLimitsInput = RoleLimits;

/// `role.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    pub account: AccountName,
    pub name: RoleName,
    pub description: Option<String>,
    #[serde(default)]
    pub publish: PermissionInput,
    #[serde(default)]
    pub subscribe: PermissionInput,
    pub response: Option<ResponseInput>,
    pub limits: Option<RoleLimitsInput>,
    /// Make it the account's default role.
    #[serde(default)]
    pub default: bool,
    /// What its users may do for themselves on `authd.self.*`; absent: whoami and creds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_service: Option<SelfService>,
}

/// `role.update`: absent fields are left as they are; a given list replaces the stored one.
/// When the change takes anything away, the role's live callout connections are ended (they
/// log in again with the new role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    pub account: AccountName,
    pub name: RoleName,
    pub description: Option<String>,
    pub publish: Option<PermissionInput>,
    pub subscribe: Option<PermissionInput>,
    /// New response permission; `{"max": 0}` removes it.
    pub response: Option<ResponseInput>,
    pub limits: Option<RoleLimitsInput>,
    pub default: Option<bool>,
    /// Replaces its self-service rights (absent fields of the object read as the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_service: Option<SelfService>,
    /// Read-only fields of [`RoleView`]: accepted so a `get` can be sent back, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<UnixTime>,
}

/// `role.get` (and, wrapped, `role.delete`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRef {
    pub account: AccountName,
    pub name: RoleName,
}

/// `role.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleListRef {
    pub account: AccountName,
    /// Most items in the answer (default 500, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    pub cursor: Option<String>,
}

impl RoleListRef {
    /// The first page of `account`'s roles.
    pub fn new(account: AccountName) -> Self {
        RoleListRef { account, limit: None, cursor: None }
    }
}

/// A role as the API shows it, in the shape `role.update` takes: the fields of
/// [`UpdateRole`] with the same names and types, plus the read-only `created_at` and
/// `updated_at`, which `update` accepts and ignores. So a `get`, edited, is a valid `update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleView {
    pub account: String,
    pub name: String,
    pub description: String,
    /// Both lists, always given.
    pub publish: PermissionInput,
    /// Both lists, always given.
    pub subscribe: PermissionInput,
    /// `null`: none (an update removes one with `{"max": 0}`).
    pub response: Option<ResponseInput>,
    /// Every limit given.
    pub limits: RoleLimits,
    pub default: bool,
    /// Its users' self-service rights (the defaults when never set).
    pub self_service: SelfService,
    /// Read-only.
    pub created_at: UnixTime,
    /// Read-only.
    pub updated_at: UnixTime,
}

impl RoleView {
    /// The view of `role` of `account` (whose default role it may be).
    pub fn of(role: &RoleRecord, account: &AccountRecord) -> Self {
        RoleView {
            account: role.account.to_string(),
            name: role.name.to_string(),
            description: role.description.clone(),
            publish: PermissionInput::of(&role.permissions.publish),
            subscribe: PermissionInput::of(&role.permissions.subscribe),
            response: role.permissions.response.as_ref().map(ResponseInput::of),
            limits: RoleLimits {
                subs: Some(role.subs),
                data: Some(role.data),
                payload: Some(role.payload),
            },
            default: account.default_role.as_ref() == Some(&role.name),
            self_service: role.self_service(),
            created_at: role.created_at,
            updated_at: role.updated_at,
        }
    }
}

impl CreateRole {
    /// A request for role `name` of `account` allowing nothing yet.
    pub fn new(account: AccountName, name: RoleName) -> Self {
        CreateRole {
            account,
            name,
            description: None,
            publish: PermissionInput::default(),
            subscribe: PermissionInput::default(),
            response: None,
            limits: None,
            default: false,
            self_service: None,
        }
    }
}

impl UpdateRole {
    /// A request that changes nothing yet: set the fields to change.
    pub fn new(account: AccountName, name: RoleName) -> Self {
        UpdateRole {
            account,
            name,
            description: None,
            publish: None,
            subscribe: None,
            response: None,
            limits: None,
            default: None,
            self_service: None,
            created_at: None,
            updated_at: None,
        }
    }
}

impl RoleRef {
    /// The role `name` of `account`.
    pub fn new(account: AccountName, name: RoleName) -> Self {
        RoleRef { account, name }
    }
}

/// `role.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeleteRole(pub RoleRef);

requests! {
    CreateRole => RoleCreate, RoleView;
    RoleRef => RoleGet, RoleView;
    RoleListRef => RoleList, super::Page<RoleView>;
    UpdateRole => RoleUpdate, RoleView;
    DeleteRole => RoleDelete, RoleView;
}

super::paged! {
    RoleListRef => RoleView;
}
