//! One shape per record, in and out: what `get` answers, sent back to `update` unchanged,
//! is accepted and changes nothing. Against a real nats-server.

mod common;

use common::{drained, Stack};
use nats_authd::client::AdminClient;
use serde_json::{json, Value};

/// `exporter` offering `svc.>`, and `acme` with every field set: limits, exports, an import
/// from `exporter`, a default role with deny lists, response permission, role limits,
/// self-service rights and a description, and a user with tags, ttl and bearer.
async fn everything_set(admin: &AdminClient) {
    let call = |endpoint: &'static str, body: Value| async move {
        admin.call(endpoint, &body).await.unwrap_or_else(|e| panic!("{endpoint}: {e}"))
    };
    call(
        "account.create",
        json!({"name": "exporter", "exports": [{"subject": "svc.>", "type": "service"}]}),
    )
    .await;
    call(
        "account.create",
        json!({
            "name": "acme",
            "description": "Acme Corp",
            "limits": {
                "connections": 10, "subscriptions": 100, "data": 1_000_000, "payload": 4096,
                "imports": 5, "exports": 6, "leaf_nodes": 2, "mem_storage": 0,
                "disk_storage": 0, "streams": 0, "consumers": 0
            },
            "exports": [{"subject": "acme.events.>", "type": "stream", "name": "events"}],
            "imports": [{
                "account": "exporter", "subject": "svc.orders", "type": "service",
                "local_subject": "orders", "name": "orders"
            }]
        }),
    )
    .await;
    call(
        "role.create",
        json!({
            "account": "acme", "name": "sensor", "description": "telemetry writers",
            "publish": {"allow": ["sensors.>"], "deny": ["sensors.secret"]},
            "subscribe": {"allow": ["_INBOX.>"], "deny": ["_INBOX.admin"]},
            "response": {"max": 3, "ttl_ms": 1500},
            "limits": {"subs": 10, "data": 2048, "payload": 512},
            "default": true,
            "self_service": {"whoami": true, "creds": true, "regenerate": true,
                             "password": true, "tokens": true, "admin": false}
        }),
    )
    .await;
    call(
        "user.create",
        json!({
            "account": "acme", "name": "dev1", "role": "sensor", "description": "first device",
            "jwt_ttl_secs": 3600, "bearer_token": true, "tags": {"site": "berlin"}
        }),
    )
    .await;
}

/// Sends what `get` answers to `update` and checks the answer and the store are unchanged.
async fn round_trip(stack: &Stack, admin: &AdminClient, noun: &str, key: Value) {
    let got = admin.call(&format!("{noun}.get"), &key).await.unwrap();
    let before = stack.authority().db().export().await.unwrap();
    let updated = admin
        .call(&format!("{noun}.update"), &got)
        .await
        .unwrap_or_else(|e| panic!("{noun}.update refused its own get: {e}\n{got:#}"));
    assert_eq!(updated, got, "{noun}.update of its own get answered something else");
    let after = stack.authority().db().export().await.unwrap();
    assert!(after == before, "{noun}.update of its own get changed the store");
}

#[tokio::test]
async fn what_get_answers_is_an_update_that_changes_nothing() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    everything_set(&admin).await;
    drained(&admin).await;

    round_trip(&stack, &admin, "account", json!({"name": "acme"})).await;
    round_trip(&stack, &admin, "role", json!({"account": "acme", "name": "sensor"})).await;
    round_trip(&stack, &admin, "user", json!({"account": "acme", "name": "dev1"})).await;
}

#[tokio::test]
async fn views_use_the_names_and_units_requests_use() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    everything_set(&admin).await;

    let account = admin.call("account.get", &json!({"name": "acme"})).await.unwrap();
    assert_eq!(account["limits"]["connections"], 10);
    assert_eq!(account["limits"]["leaf_nodes"], 2);
    assert!(account["limits"].get("conn").is_none(), "JWT names leak: {account:#}");
    assert_eq!(
        account["imports"],
        json!([{"account": "exporter", "subject": "svc.orders", "type": "service",
                "local_subject": "orders", "name": "orders"}])
    );
    assert_eq!(account["default_role"], "sensor");

    let role = admin.call("role.get", &json!({"account": "acme", "name": "sensor"})).await.unwrap();
    assert_eq!(role["response"], json!({"max": 3, "ttl_ms": 1500}));
    assert_eq!(role["limits"], json!({"subs": 10, "data": 2048, "payload": 512}));
    assert!(role.get("subs").is_none(), "role limits are flat: {role:#}");
}

#[tokio::test]
async fn an_edited_get_is_a_valid_update() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    everything_set(&admin).await;

    let mut role =
        admin.call("role.get", &json!({"account": "acme", "name": "sensor"})).await.unwrap();
    role["limits"]["subs"] = json!(20);
    role["response"]["ttl_ms"] = json!(250);
    let updated = admin.call("role.update", &role).await.unwrap();
    assert_eq!(updated["limits"]["subs"], 20);
    assert_eq!(updated["response"], json!({"max": 3, "ttl_ms": 250}));

    let mut account = admin.call("account.get", &json!({"name": "acme"})).await.unwrap();
    account["limits"]["connections"] = json!(7);
    let updated = admin.call("account.update", &account).await.unwrap();
    assert_eq!(updated["limits"]["connections"], 7);
    assert_eq!(updated["imports"], account["imports"]);
}
