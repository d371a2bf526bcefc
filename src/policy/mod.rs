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

/// Whether changing a role from `old` to `new` may take away anything `old` allowed: an allow
/// entry removed (or a first one added, since an empty allow list allows everything), a deny
/// entry added, the response permission changed, or a per-user limit lowered. Conservative:
/// an entry removed that another still covers counts too.
pub fn narrows(old: &RoleRecord, new: &RoleRecord) -> bool {
    fn direction(old: &Permission, new: &Permission) -> bool {
        // An empty allow list allows everything.
        let allow_lost = !new.allow.is_empty()
            && (old.allow.is_empty() || old.allow.iter().any(|s| !new.allow.contains(s)));
        allow_lost || new.deny.iter().any(|s| !old.deny.contains(s))
    }
    // -1 is unlimited: compare as the largest value.
    let lowered = |old: i64, new: i64| new >= 0 && (old < 0 || new < old);
    direction(&old.permissions.publish, &new.permissions.publish)
        || direction(&old.permissions.subscribe, &new.permissions.subscribe)
        || old.permissions.response != new.permissions.response
        || lowered(old.subs, new.subs)
        || lowered(old.data, new.data)
        || lowered(old.payload, new.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Permission;
    use crate::model::{AccountName, RoleName, UserName};
    use crate::vault::MasterKey;

    #[test]
    fn narrowing_is_anything_taken_away_and_nothing_else() {
        let perms = |allow: &[&str], deny: &[&str]| Permission {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        let role = |publish: Permission, subs: i64| RoleRecord {
            subs,
            ..RoleRecord::new(
                AccountName::new("acme").unwrap(),
                RoleName::new("r").unwrap(),
                Permissions { publish, subscribe: Permission::default(), response: None },
                0,
            )
        };
        let base = role(perms(&["sensors.>"], &[]), -1);
        assert!(!narrows(&base, &base));
        assert!(!narrows(&base, &role(perms(&["sensors.>", "alerts.>"], &[]), -1)), "widened");
        assert!(narrows(&base, &role(perms(&["alerts.>"], &[]), -1)), "an allow removed");
        assert!(narrows(&base, &role(perms(&["sensors.>"], &["sensors.x"]), -1)), "a deny added");
        assert!(narrows(&base, &role(perms(&["sensors.>"], &[]), 10)), "a limit lowered");
        assert!(!narrows(&role(perms(&["a"], &[]), 10), &role(perms(&["a"], &[]), -1)), "raised");
        let open = role(perms(&[], &[]), -1);
        assert!(narrows(&open, &base), "allow-all became a list");
        assert!(!narrows(&base, &open), "a list became allow-all");
    }

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
        let role = RoleRecord::new(
            user.account.clone(),
            RoleName::new("r").unwrap(),
            Permissions {
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
            0,
        );
        let p = connection_permissions(&user, Some(&role), "acme", "UKEY");
        assert_eq!(p.permissions.publish.allow, ["user.dev1.>", "berlin.>"]);
        assert_eq!(p.permissions.subscribe.deny, [">"], "an unresolved deny denies everything");
        assert_eq!(
            connection_permissions(&user, None, "acme", "UKEY").permissions,
            deny_all().permissions
        );
    }
}
