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
}

impl PermissionInput {
    /// Both lists given.
    pub fn lists(allow: &[&str], deny: &[&str]) -> Self {
        let owned = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        PermissionInput { allow: owned(allow), deny: owned(deny) }
    }
}

/// Permission to answer requests: how many replies, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseInput {
    pub max: i64,
    /// Milliseconds; 0: no time limit.
    #[serde(default)]
    pub ttl_ms: i64,
}

/// Per-user limits of a role; `-1` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleLimitsInput {
    pub subs: Option<i64>,
    pub data: Option<i64>,
    pub payload: Option<i64>,
}

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
}

/// A role as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleView {
    pub account: String,
    pub name: String,
    pub description: String,
    pub publish: Permission,
    pub subscribe: Permission,
    pub response: Option<ResponsePermission>,
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    pub default: bool,
    /// Its users' self-service rights (the defaults when never set).
    pub self_service: SelfService,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl RoleView {
    pub fn of(role: &RoleRecord, account: &AccountRecord) -> Self {
        RoleView {
            account: role.account.to_string(),
            name: role.name.to_string(),
            description: role.description.clone(),
            publish: role.permissions.publish.clone(),
            subscribe: role.permissions.subscribe.clone(),
            response: role.permissions.response,
            subs: role.subs,
            data: role.data,
            payload: role.payload,
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
    RoleListRef => RoleList, Vec<RoleView>;
    UpdateRole => RoleUpdate, RoleView;
    DeleteRole => RoleDelete, RoleView;
}
