//! Role subjects with templates, resolved per connection in nats-server's own syntax (the one
//! its scoped signing keys use): `{{name()}}`, `{{subject()}}`, `{{account-name()}}`,
//! `{{tag(KEY)}}`.
//!
//! A template that does not resolve (an unknown function, a missing tag, or a value that is not
//! a single subject token, such as one with a dot) never widens access: in an allow list the
//! subject is dropped; in a deny list it becomes `>`, denying everything in that direction.

use std::collections::BTreeMap;

use crate::claims::{Permission, Permissions};

/// What templates resolve against.
#[derive(Debug, Clone)]
pub struct TemplateValues<'a> {
    /// `{{name()}}`: the user's name.
    pub name: &'a str,
    /// `{{subject()}}`: the connection's user key.
    pub subject: &'a str,
    /// `{{account-name()}}`.
    pub account_name: &'a str,
    /// `{{tag(KEY)}}`.
    pub tags: &'a BTreeMap<String, String>,
}

/// A value usable as one subject token.
fn token_safe(value: &str) -> bool {
    !value.is_empty()
        && !value
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

/// Resolves every template in `subject`; `None` if any does not resolve.
pub fn resolve(subject: &str, values: &TemplateValues<'_>) -> Option<String> {
    let mut out = String::with_capacity(subject.len());
    let mut rest = subject;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let expr = after[..end].trim();
        let value = match expr {
            "name()" => Some(values.name.to_string()),
            "subject()" => Some(values.subject.to_string()),
            "account-name()" => Some(values.account_name.to_string()),
            _ => expr
                .strip_prefix("tag(")
                .and_then(|t| t.strip_suffix(')'))
                .and_then(|key| values.tags.get(key.trim()).cloned()),
        }?;
        if !token_safe(&value) {
            return None;
        }
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

fn resolve_permission(permission: &Permission, values: &TemplateValues<'_>) -> Permission {
    let allow = permission.allow.iter().filter_map(|s| resolve(s, values)).collect();
    let mut deny: Vec<String> = Vec::with_capacity(permission.deny.len());
    for s in &permission.deny {
        match resolve(s, values) {
            Some(resolved) => deny.push(resolved),
            None => {
                deny = vec![">".to_string()];
                break;
            }
        }
    }
    Permission { allow, deny }
}

/// `permissions` with every template resolved for one connection.
pub fn resolve_permissions(permissions: &Permissions, values: &TemplateValues<'_>) -> Permissions {
    let publish = resolve_permission(&permissions.publish, values);
    let subscribe = resolve_permission(&permissions.subscribe, values);
    // An allow list that lost all its entries must not become "allow everything" (an empty
    // list is no restriction to nats-server).
    let emptied = |before: &Permission, after: &Permission| {
        !before.allow.is_empty() && after.allow.is_empty()
    };
    let mut resolved = Permissions { publish, subscribe, response: permissions.response };
    if emptied(&permissions.publish, &resolved.publish) {
        resolved.publish.deny = vec![">".into()];
    }
    if emptied(&permissions.subscribe, &resolved.subscribe) {
        resolved.subscribe.deny = vec![">".into()];
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(tags: &BTreeMap<String, String>) -> TemplateValues<'_> {
        TemplateValues { name: "dev1", subject: "UABC", account_name: "acme", tags }
    }

    #[test]
    fn templates_resolve_like_nats_server_scoped_keys() {
        let tags = BTreeMap::from([("site".to_string(), "berlin".to_string())]);
        let v = values(&tags);
        assert_eq!(resolve("user.{{name()}}.>", &v).as_deref(), Some("user.dev1.>"));
        assert_eq!(resolve("inbox.{{subject()}}", &v).as_deref(), Some("inbox.UABC"));
        assert_eq!(
            resolve("{{account-name()}}.{{ tag(site) }}.*", &v).as_deref(),
            Some("acme.berlin.*")
        );
        assert_eq!(resolve("plain.subject", &v).as_deref(), Some("plain.subject"));
        for unresolvable in
            ["a.{{tag(missing)}}", "a.{{nope()}}", "a.{{name()", "a.}}", "a.{{tag(site}}"]
        {
            assert_eq!(resolve(unresolvable, &v), None, "{unresolvable}");
        }
        let dotted = BTreeMap::from([("site".to_string(), "a.b".to_string())]);
        assert_eq!(
            resolve("x.{{tag(site)}}", &values(&dotted)),
            None,
            "a dotted value would widen the match"
        );
    }

    #[test]
    fn unresolved_templates_deny_never_allow() {
        let tags = BTreeMap::new();
        let permissions = Permissions {
            publish: Permission {
                allow: vec!["user.{{name()}}.>".into(), "x.{{tag(t)}}".into()],
                deny: vec![],
            },
            subscribe: Permission {
                allow: vec!["{{tag(t)}}.>".into()],
                deny: vec!["secret.{{tag(t)}}".into()],
            },
            response: None,
        };
        let resolved = resolve_permissions(&permissions, &values(&tags));
        assert_eq!(resolved.publish.allow, ["user.dev1.>"]);
        assert!(resolved.publish.deny.is_empty());
        assert!(resolved.subscribe.allow.is_empty());
        assert_eq!(
            resolved.subscribe.deny,
            [">"],
            "nothing left to allow and an unresolved deny: deny all"
        );
    }
}
