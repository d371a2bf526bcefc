//! Human-readable rendering of API answers: tables for lists, `key: value` lines for records.

use serde_json::Value;

/// Columns shown for list answers of each noun.
fn columns(endpoint: &str) -> &'static [&'static str] {
    match endpoint.split('.').next().unwrap_or_default() {
        "account" => &["name", "kind", "active", "public_key", "description"],
        "user" => &["account", "name", "role", "active", "has_password", "public_key"],
        "role" => &["account", "name", "default", "publish", "subscribe"],
        "pending" => &["account", "state", "delete", "attempts", "last_error"],
        "token" => &["id", "account", "user", "description", "created_at"],
        _ => &[],
    }
}

/// One value as a cell: strings bare, lists comma-joined, `{allow, deny}` spelled out.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.contains_key("allow") || map.contains_key("deny") => {
            let part = |k: &str| map.get(k).map(cell).unwrap_or_else(|| "-".into());
            format!("allow {} deny {}", part("allow"), part("deny"))
        }
        other => other.to_string(),
    }
}

/// Renders rows as an aligned table with a header.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_uppercase()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Renders the answer of `endpoint` for people.
pub fn render(endpoint: &str, answer: &Value) -> String {
    match answer {
        Value::Array(items) => {
            if items.is_empty() {
                return "(none)".into();
            }
            let cols = columns(endpoint);
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|item| {
                    cols.iter().map(|c| cell(item.get(*c).unwrap_or(&Value::Null))).collect()
                })
                .collect();
            table(cols, &rows)
        }
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            map.iter()
                .map(|(k, v)| format!("{k:<width$}  {}", cell(v)))
                .collect::<Vec<_>>()
                .join("\n")
        }
        other => cell(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_become_aligned_tables() {
        let answer = json!([
            {"name": "acme", "kind": "tenant", "active": true, "public_key": "AAA", "description": ""},
            {"name": "globex-eu", "kind": "tenant", "active": false, "public_key": "ABB", "description": "EU"}
        ]);
        assert_eq!(
            render("account.list", &answer),
            "NAME       KIND    ACTIVE  PUBLIC_KEY  DESCRIPTION\n\
             acme       tenant  true    AAA         -\n\
             globex-eu  tenant  false   ABB         EU"
        );
        assert_eq!(render("user.list", &json!([])), "(none)");
    }

    #[test]
    fn records_become_key_value_lines_and_permissions_read_well() {
        let answer = json!({"name": "sensor", "publish": {"allow": ["a.>", "b"], "deny": []}});
        assert_eq!(render("role.get", &answer), "name     sensor\npublish  allow a.>,b deny -");
    }
}
