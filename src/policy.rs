//! Pure permission policy: what a user's JWT may do, from its kind and role.

use crate::claims::{Permission, Permissions, UserLimits, UserPermissionLimits};
use crate::model::{RoleRecord, UserKind, UserRecord};

/// Everything denied: for users with nothing granted and for the sentinel.
pub fn deny_all() -> UserPermissionLimits {
    let deny = Permission { allow: Vec::new(), deny: vec![">".to_string()] };
    UserPermissionLimits {
        permissions: Permissions { publish: deny.clone(), subscribe: deny, response: None },
        ..UserPermissionLimits::default()
    }
}

/// The permissions and limits a user's JWT carries.
///
/// Service and admin users get their account's full subject space (an empty permission set is
/// "allow all" to nats-server); the sentinel gets nothing, so the only thing it can do is
/// trigger the callout; a member gets its role, or nothing without one.
pub fn user_permissions(user: &UserRecord, role: Option<&RoleRecord>) -> UserPermissionLimits {
    match user.kind {
        UserKind::Service | UserKind::Admin => UserPermissionLimits::default(),
        UserKind::Sentinel => deny_all(),
        UserKind::Member => match role {
            Some(role) => UserPermissionLimits {
                permissions: role.permissions.clone(),
                limits: UserLimits {
                    subs: role.subs,
                    data: role.data,
                    payload: role.payload,
                    ..UserLimits::default()
                },
                bearer_token: user.bearer_token,
                ..UserPermissionLimits::default()
            },
            None => deny_all(),
        },
    }
}
