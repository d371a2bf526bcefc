//! Every kind of bad input gets a clear error with a stable code, in the micro-protocol
//! headers and in the body, and leaves the store byte-for-byte unchanged.

mod common;

use std::time::Duration;

use common::{drained, Stack};
use nats_authd::client::AdminClient;
use serde_json::{json, Value};

/// (endpoint, body, expected code, text the message must contain)
fn cases() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    vec![
        ("account.create", b"not json".to_vec(), 400, "invalid request"),
        ("account.create", j(json!({})), 400, "missing field `name`"),
        ("account.create", j(json!({"name": "n0", "bogus": 1})), 400, "unknown field `bogus`"),
        ("account.create", j(json!({"name": ""})), 400, "must not be empty"),
        ("account.create", j(json!({"name": "a b"})), 400, "only letters"),
        ("account.create", j(json!({"name": "x".repeat(65)})), 400, "longer than 64"),
        ("account.create", j(json!({"name": 42})), 400, "invalid type"),
        ("account.create", j(json!({"name": "acme"})), 409, "already exists"),
        ("account.create", j(json!({"name": "SYS"})), 409, "already exists"),
        (
            "account.create",
            j(json!({"name": "n1", "limits": {"connections": -2}})),
            400,
            "limit connections",
        ),
        (
            "account.create",
            j(json!({"name": "n2", "limits": {"conns": 5}})),
            400,
            "unknown field `conns`",
        ),
        (
            "account.create",
            j(json!({"name": "n3", "exports": [{"subject": "a..b", "type": "service"}]})),
            400,
            "invalid subject \"a..b\"",
        ),
        (
            "account.create",
            j(json!({"name": "n4", "exports": [{"subject": "a.>", "type": "rpc"}]})),
            400,
            "unknown variant",
        ),
        (
            "account.create",
            j(
                json!({"name": "n5", "imports": [{"account": "nope", "subject": "a", "type": "service"}]}),
            ),
            404,
            "account \"nope\" not found",
        ),
        (
            "account.create",
            j(
                json!({"name": "n6", "imports": [{"account": "acme", "subject": "secret.x", "type": "service"}]}),
            ),
            400,
            "exports no",
        ),
        (
            "account.create",
            j(
                json!({"name": "n6b", "imports": [{"account": "sys", "subject": "orders.x", "type": "service"}]}),
            ),
            400,
            "only from tenant accounts",
        ),
        // Reserved subjects: an export covering $SYS.> would hand the exporter's connection
        // list to whoever imports it; authd.> and $SRV.> are the API and its discovery.
        (
            "account.create",
            j(json!({"name": "r1", "exports": [{"subject": "$SYS.>", "type": "stream"}]})),
            400,
            "overlaps $SYS.>",
        ),
        (
            "account.create",
            j(json!({"name": "r2", "exports": [{"subject": ">", "type": "service"}]})),
            400,
            "reserved",
        ),
        (
            "account.create",
            j(
                json!({"name": "r3", "exports": [{"subject": "authd.user.create", "type": "service"}]}),
            ),
            400,
            "overlaps authd.>",
        ),
        (
            "account.create",
            j(json!({"name": "r4", "exports": [{"subject": "$SRV.*", "type": "service"}]})),
            400,
            "overlaps $SRV.>",
        ),
        (
            "account.update",
            j(json!({"name": "acme", "exports": [{"subject": "*.REQ.>", "type": "stream"}]})),
            400,
            "overlaps $SYS.>",
        ),
        (
            "account.create",
            j(
                json!({"name": "r5", "imports": [{"account": "acme", "subject": "sensors.x", "type": "stream", "local_subject": "authd.self.creds"}]}),
            ),
            400,
            "overlaps authd.>",
        ),
        (
            "account.create",
            j(json!({"name": "n7", "description": "x".repeat(2000)})),
            400,
            "description is longer",
        ),
        ("account.create", vec![b' '; 70 * 1024], 400, "larger than the limit"),
        ("account.get", j(json!({"name": "ghost"})), 404, "account \"ghost\" not found"),
        ("account.update", j(json!({"name": "sys", "description": "x"})), 400, "built in"),
        ("account.update", j(json!({"name": "acme", "active": "yes"})), 400, "invalid type"),
        (
            "account.update",
            j(json!({"name": "acme", "default_role": "ghost"})),
            404,
            "role \"acme/ghost\" not found",
        ),
        ("account.delete", j(json!({"name": "acme"})), 409, "has 1 user"),
        ("account.delete", j(json!({"name": "auth"})), 400, "built in"),
        ("account.list", b"[1,2]".to_vec(), 400, "invalid request"),
        ("user.create", j(json!({"account": "acme", "name": "dev1"})), 409, "already exists"),
        (
            "user.create",
            j(json!({"account": "ghost", "name": "u"})),
            404,
            "account \"ghost\" not found",
        ),
        (
            "user.create",
            j(json!({"account": "acme", "name": "u2", "role": "ghost"})),
            404,
            "role \"acme/ghost\" not found",
        ),
        (
            "user.create",
            j(json!({"account": "acme", "name": "u3", "password": "short"})),
            400,
            "password must be",
        ),
        (
            "user.create",
            j(json!({"account": "acme", "name": "u4", "jwt_ttl_secs": -5})),
            400,
            "jwt_ttl_secs",
        ),
        (
            "user.create",
            j(json!({"account": "auth", "name": "u5"})),
            400,
            "managed by nats-authd itself",
        ),
        (
            "user.create",
            j(json!({"account": "acme", "name": "u6", "password": 12345678})),
            400,
            "invalid type",
        ),
        (
            "user.create",
            j(json!({"account": "acme", "name": "bad/name"})),
            400,
            "invalid user name",
        ),
        (
            "user.get",
            j(json!({"account": "acme", "name": "ghost"})),
            404,
            "user \"acme/ghost\" not found",
        ),
        (
            "user.update",
            j(json!({"account": "acme", "name": "dev1", "role": "ghost"})),
            404,
            "role \"acme/ghost\" not found",
        ),
        ("user.delete", j(json!({"account": "acme", "name": "ghost"})), 404, "not found"),
        ("user.creds", j(json!({"account": "acme"})), 400, "missing field `name`"),
        ("user.regenerate", j(json!({"account": "acme", "name": "ghost"})), 404, "not found"),
        (
            "role.create",
            j(json!({"account": "acme", "name": "r1", "publish": {"allow": ["a.>.b"]}})),
            400,
            "publish.allow: invalid subject \"a.>.b\"",
        ),
        (
            "role.create",
            j(json!({"account": "acme", "name": "r2", "subscribe": {"deny": ["foo bar"]}})),
            400,
            "subscribe.deny: invalid subject \"foo bar\"",
        ),
        (
            "role.create",
            j(json!({"account": "acme", "name": "r2b", "publish": {"allow": ["a*"]}})),
            400,
            "wildcards must be whole tokens",
        ),
        ("role.create", j(json!({"account": "acme", "name": "sensor"})), 409, "already exists"),
        (
            "role.create",
            j(json!({"account": "acme", "name": "r3", "response": {"max": -1}})),
            400,
            "response.max",
        ),
        ("role.create", j(json!({"account": "sys", "name": "r4"})), 400, "built in"),
        (
            "role.create",
            j(json!({"account": "acme", "name": "r5", "limits": {"subs": -7}})),
            400,
            "limit subs",
        ),
        ("role.delete", j(json!({"account": "acme", "name": "sensor"})), 409, "1 user(s) hold it"),
        (
            "role.update",
            j(json!({"account": "acme", "name": "ghost"})),
            404,
            "role \"acme/ghost\" not found",
        ),
        ("pending.retry", j(json!({"account": "acme"})), 404, "not found"),
        ("status", j(json!({"x": 1})), 400, "unknown field `x`"),
    ]
}

#[tokio::test]
async fn bad_input_gets_the_right_code_and_changes_nothing() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    admin.call("account.create", &json!({ "name": "acme" })).await.unwrap();
    admin
        .call(
            "role.create",
            &json!({ "account": "acme", "name": "sensor", "publish": { "allow": ["sensors.>"] } }),
        )
        .await
        .unwrap();
    admin
        .call("user.create", &json!({ "account": "acme", "name": "dev1", "role": "sensor" }))
        .await
        .unwrap();
    drained(&admin).await;

    let before = stack.authority().db().export().await.unwrap();
    let nats = admin.nats().clone();
    let cases = cases();
    assert!(cases.len() >= 30);
    for (endpoint, body, code, text) in cases {
        let reply = nats.request(format!("authd.{endpoint}"), body.clone().into()).await.unwrap();
        let headers =
            reply.headers.as_ref().unwrap_or_else(|| panic!("{endpoint}: no error headers"));
        let header_code =
            headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE).unwrap().as_str();
        let header_message = headers.get(async_nats::service::NATS_SERVICE_ERROR).unwrap().as_str();
        assert_eq!(
            header_code,
            code.to_string(),
            "{endpoint} {}: {header_message}",
            String::from_utf8_lossy(&body)
        );
        assert!(header_message.contains(text), "{endpoint}: {header_message:?} lacks {text:?}");
        let parsed: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(parsed["error"]["code"], code, "{endpoint}");
        assert_eq!(parsed["error"]["message"], header_message, "{endpoint}");
        assert!(
            !header_message.contains("$argon2") && !header_message.contains("SU"),
            "{endpoint}"
        );
    }
    assert!(
        stack.authority().db().export().await.unwrap() == before,
        "bad input changed the store"
    );

    // The client library reads the same errors.
    let err = AdminClient::new(nats, "authd", Duration::from_secs(5))
        .call("account.get", &json!({ "name": "ghost" }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(404));
}
