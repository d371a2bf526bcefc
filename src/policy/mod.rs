//! Pure permission policy: what a user's JWT may do, from its kind, its role, and (for role
//! templates) the connection.

pub mod templates;

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

/// The permissions of one connection: [`user_permissions`] with role templates resolved for
/// `subject` (the JWT's `sub`), the account's name and the user's tags. Used for creds files
/// and callout logins alike, so a template never reaches a JWT unresolved.
pub fn connection_permissions(
    user: &UserRecord,
    role: Option<&RoleRecord>,
    account_name: &str,
    subject: &str,
) -> UserPermissionLimits {
    let mut permissions = user_permissions(user, role);
    let values = templates::TemplateValues {
        name: user.name.as_str(),
        subject,
        account_name,
        tags: &user.tags,
    };
    permissions.permissions = templates::resolve_permissions(&permissions.permissions, &values);
    permissions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Permission;
    use crate::model::{AccountName, RoleName, UserName};
    use crate::vault::MasterKey;

    #[test]
    fn creds_and_callout_users_get_templates_resolved() {
        let master = MasterKey::generate();
        let mut user = UserRecord::new(
            AccountName::new("acme").unwrap(),
            UserName::new("dev1").unwrap(),
            UserKind::Member,
            &master,
            0,
        );
        user.tags.insert("site".into(), "berlin".into());
        let role = RoleRecord {
            account: user.account.clone(),
            name: RoleName::new("r").unwrap(),
            description: String::new(),
            permissions: Permissions {
                publish: Permission {
                    allow: vec!["user.{{name()}}.>".into(), "{{tag(site)}}.>".into()],
                    deny: vec![],
                },
                subscribe: Permission {
                    allow: vec![],
                    deny: vec!["private.{{tag(missing)}}".into()],
                },
                response: None,
            },
            subs: -1,
            data: -1,
            payload: -1,
            deleting: false,
            self_service: None,
            created_at: 0,
            updated_at: 0,
        };
        let p = connection_permissions(&user, Some(&role), "acme", "UKEY");
        assert_eq!(p.permissions.publish.allow, ["user.dev1.>", "berlin.>"]);
        assert_eq!(p.permissions.subscribe.deny, [">"], "an unresolved deny denies everything");
        assert_eq!(
            connection_permissions(&user, None, "acme", "UKEY").permissions,
            deny_all().permissions
        );
    }
}
