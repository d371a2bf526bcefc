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

/// Unix seconds as RFC 3339 UTC (`2026-11-26T11:30:00Z`), by Howard Hinnant's
/// days-to-civil algorithm: no date crate for one format.
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Whether a field holds unix seconds (`created_at`, `last_failover_at`, ...).
fn is_time(key: &str) -> bool {
    key.ends_with("_at")
}

/// A field's value as a cell: times readable, the rest as [`cell`].
fn field(key: &str, value: &Value) -> String {
    match value.as_i64() {
        Some(secs) if is_time(key) && secs > 0 => rfc3339(secs),
        _ => cell(value),
    }
}

/// `key value` rows of a record; nested objects become `key.sub value` rows (lists of
/// objects `key[i].sub`), so nothing renders as a JSON blob.
fn rows(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let permission = |m: &serde_json::Map<String, Value>| {
        m.keys().all(|k| k == "allow" || k == "deny") && !m.is_empty()
    };
    match value {
        Value::Object(map) if !map.is_empty() && !permission(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                rows(&key, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, item) in items.iter().enumerate() {
                rows(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => {
            let last = prefix.rsplit('.').next().unwrap_or(prefix);
            out.push((prefix.to_string(), field(last, other)));
        }
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
    // A list page (or all pages, followed): its items as a table.
    if let Some(items) = answer.get("items").filter(|i| i.is_array()) {
        return render(endpoint, items);
    }
    match answer {
        Value::Array(items) => {
            if items.is_empty() {
                return "(none)".into();
            }
            let cols = columns(endpoint);
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|item| {
                    cols.iter().map(|c| field(c, item.get(*c).unwrap_or(&Value::Null))).collect()
                })
                .collect();
            table(cols, &rows)
        }
        Value::Object(_) => {
            let mut out = Vec::new();
            rows("", answer, &mut out);
            let width = out.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            out.iter().map(|(k, v)| format!("{k:<width$}  {v}")).collect::<Vec<_>>().join("\n")
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

    #[test]
    fn times_read_as_rfc3339_and_nested_values_as_rows() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_692_600), "2026-11-26T11:30:00Z");
        let answer = json!({
            "created_at": 1_795_692_600,
            "limits": {"subs": 10},
            "imports": [{"account": "x", "subject": "s"}]
        });
        assert_eq!(
            render("account.get", &answer),
            "created_at          2026-11-26T11:30:00Z\n\
             imports[0].account  x\n\
             imports[0].subject  s\n\
             limits.subs         10"
        );
        let list = json!([{"id": "t1", "created_at": 1_795_692_600}]);
        assert!(render("token.list", &list).contains("2026-11-26T11:30:00Z"));
    }
}
