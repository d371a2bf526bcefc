//! Self-service (`authd.self.*`) against a real nats-server: the caller is who the server says,
//! never who the payload or a forged header says.

mod common;

use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};
use common::{
    account_name, account_of, disconnected_within, drained, role_name, user_name, violation,
    Running, Stack,
};
use futures::StreamExt;
use nats_authd::api::account::CreateAccount;
use nats_authd::api::role::{CreateRole, RoleListRef};
use nats_authd::api::selfservice::{
    SelfListTokens, TenantListRoles, TenantListTokens, TenantListUsers,
};
use nats_authd::api::token::{CreateToken, ListTokens};
use nats_authd::api::user::{CreateUser, UserListRef, UserView};
use nats_authd::api::{Page, MAX_PAGE};
use nats_authd::client::{AdminClient, ClientError};
use nats_authd::manage::selfservice::Caller;
use nats_authd::manage::{ManageError, Manager, PAGE_ENVELOPE_BYTES};
use nats_authd::model::{self, AccountName, LoginRecord, SelfService, UserName, UserRecord};
use nats_authd::names::API_PREFIX;
use nats_authd::store::Batch;
use serde_json::{json, Value};

const DEV1_PW: &str = "dev1-password";
const DEV2_PW: &str = "dev2-password";
const B1_PW: &str = "b1-password";

struct Setup {
    stack: Stack,
    _service: Running,
    admin: AdminClient,
}

/// Tenants acme (role `dev`: own `user.<name>.>` subjects, the self-service API, with every
/// self-service right but admin; users dev1, dev2; role `plain` with default rights and user
/// viewer) and beta (user b1 with role `dev` of beta).
async fn setup() -> Setup {
    let stack = Stack::start().await;
    let service = stack.serve();
    let admin = stack.admin().await;
    for account in ["acme", "beta"] {
        admin.call("account.create", &json!({ "name": account })).await.unwrap();
        admin
            .call(
                "role.create",
                &json!({ "account": account, "name": "dev",
                     "publish": { "allow": ["user.{{name()}}.>", "authd.self.>", "$SYS.REQ.USER.INFO"] },
                     "subscribe": { "allow": ["user.{{name()}}.>", "_INBOX.>"] },
                     "self_service": { "regenerate": true, "password": true, "tokens": true } }),
            )
            .await
            .unwrap();
    }
    admin
        .call(
            "role.create",
            &json!({ "account": "acme", "name": "plain",
                     "publish": { "allow": ["authd.self.>"] },
                     "subscribe": { "allow": ["_INBOX.>"] } }),
        )
        .await
        .unwrap();
    for (account, name, role, password) in [
        ("acme", "dev1", "dev", DEV1_PW),
        ("acme", "dev2", "dev", DEV2_PW),
        ("acme", "viewer", "plain", "viewer-password"),
        ("beta", "b1", "dev", B1_PW),
    ] {
        admin
            .call(
                "user.create",
                &json!({ "account": account, "name": name, "role": role, "password": password }),
            )
            .await
            .unwrap();
    }
    drained(&admin).await;
    Setup { stack, _service: service, admin }
}

type Events = tokio::sync::mpsc::UnboundedReceiver<String>;

/// Logs in with user and password only, no file: the server's `default_sentinel` takes the
/// connection to the callout.
async fn login(
    stack: &Stack,
    user: &str,
    password: &str,
) -> Result<(async_nats::Client, Events), async_nats::ConnectError> {
    plain(stack, ConnectOptions::with_user_and_password(user.into(), password.into())).await
}

/// Connects with `options` as they are (no creds added), reporting connection events.
async fn plain(
    stack: &Stack,
    options: ConnectOptions,
) -> Result<(async_nats::Client, Events), async_nats::ConnectError> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let options = options.event_callback(move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.to_string());
        }
    });
    Ok((options.connect(stack.url()).await?, rx))
}

/// The `default_sentinel` JWT of the generated server config.
fn default_sentinel(stack: &Stack) -> String {
    let config = std::fs::read_to_string(stack.layout.config_file()).unwrap();
    let line =
        config.lines().find(|l| l.starts_with("default_sentinel:")).expect("no default_sentinel");
    line.split('"').nth(1).unwrap().to_string()
}

fn api(client: &async_nats::Client) -> AdminClient {
    AdminClient::new(client.clone(), API_PREFIX, Duration::from_secs(10))
}

async fn user_record(stack: &Stack, account: &str, name: &str) -> UserRecord {
    let key =
        UserRecord::key_of(&AccountName::new(account).unwrap(), &UserName::new(name).unwrap());
    stack.authority().db().get::<UserRecord>(&key).await.unwrap().unwrap()
}

fn code(result: Result<Value, nats_authd::client::ClientError>) -> u16 {
    match result {
        Ok(v) => panic!("expected a refusal, got {v}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("no service error: {e}")),
    }
}

#[tokio::test]
async fn dev1_takes_its_own_creds_and_connects_with_them_directly_into_acme() {
    let s = setup().await;
    let (client, _events) = login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    let me = api(&client).call("self.whoami", &json!({})).await.unwrap();
    assert_eq!((me["account"].as_str(), me["user"].as_str()), (Some("acme"), Some("dev1")));
    assert_eq!(me["login"], "callout");
    assert_eq!(me["role"], "dev");
    let creds = api(&client).call("self.creds", &json!({})).await.unwrap();
    let creds = creds["creds"].as_str().unwrap().to_string();
    client.drain().await.unwrap();

    let (direct, mut events) = s.stack.connect_creds(&creds).await;
    assert_eq!(
        account_of(&direct).await,
        s.admin.call("account.get", &json!({"name": "acme"})).await.unwrap()["public_key"]
            .as_str()
            .unwrap()
    );
    let me = api(&direct).call("self.whoami", &json!({})).await.unwrap();
    assert_eq!((me["user"].as_str(), me["login"].as_str()), (Some("dev1"), Some("creds")));
    // The role's permissions: its own subjects, nothing of dev2's.
    let mut own = direct.subscribe("user.dev1.>").await.unwrap();
    direct.flush().await.unwrap();
    direct.publish("user.dev1.x", "mine".into()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), own.next()).await.unwrap().unwrap();
    assert_eq!(got.payload.as_ref(), b"mine");
    direct.publish("user.dev2.x", "theirs".into()).await.unwrap();
    direct.flush().await.unwrap();
    violation(&mut events, "user.dev2.x").await;
}

#[tokio::test]
async fn dev1_reaches_nothing_of_dev2_by_payload_subject_or_forged_header() {
    let s = setup().await;
    let dev2_before = user_record(&s.stack, "acme", "dev2").await;
    let (client, mut events) = login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    let dev1 = api(&client);

    // Payloads naming someone else are unknown fields: refused, whoever they name.
    for endpoint in ["self.creds", "self.whoami", "self.regenerate", "self.token.list"] {
        for body in [json!({"account": "acme", "name": "dev2"}), json!({"user": "dev2"})] {
            assert_eq!(code(dev1.call(endpoint, &body).await), 400, "{endpoint} {body}");
        }
    }
    // A forged Nats-Request-Info naming dev2 (and beta) is overwritten by the server.
    let acme_key = s.admin.call("account.get", &json!({"name": "acme"})).await.unwrap()
        ["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Request-Info",
        json!({ "acc": acme_key, "user": "dev2" }).to_string().as_str(),
    );
    let reply =
        client.request_with_headers("authd.self.creds", headers, "{}".into()).await.unwrap();
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["name"], "dev1", "the forged header was believed: {answer}");
    // The admin API is not imported into tenants: no answer, and the role forbids it anyway.
    let admin_api =
        client.request("authd.user.creds", r#"{"account":"acme","name":"dev2"}"#.into());
    assert!(tokio::time::timeout(Duration::from_secs(3), admin_api)
        .await
        .map_or(true, |r| r.is_err()));
    violation(&mut events, "authd.user.creds").await;
    // dev1's own token revoke cannot touch dev2's token.
    let dev2_token =
        s.admin.call("token.create", &json!({"account": "acme", "user": "dev2"})).await.unwrap();
    let id = dev2_token["id"].as_str().unwrap();
    assert_eq!(code(dev1.call("self.token.revoke", &json!({ "id": id })).await), 404);
    assert_eq!(
        s.admin.call("token.list", &json!({"account": "acme", "user": "dev2"})).await.unwrap()
            ["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(user_record(&s.stack, "acme", "dev2").await, dev2_before, "dev2 changed");

    // A user of beta sees only itself, in beta.
    let (b1, _e) = login(&s.stack, "b1", B1_PW).await.unwrap();
    let me = api(&b1).call("self.whoami", &json!({})).await.unwrap();
    assert_eq!((me["account"].as_str(), me["user"].as_str()), (Some("beta"), Some("b1")));
    assert_eq!(code(api(&b1).call("self.admin.user.list", &json!({})).await), 403);
    assert_eq!(code(api(&b1).call("self.token.revoke", &json!({ "id": id })).await), 404);
}

#[tokio::test]
async fn callers_that_are_not_tenant_users_are_refused() {
    let s = setup().await;
    // ADMIN imports authd.> too, but is no tenant.
    assert_eq!(code(s.admin.call("self.whoami", &json!({})).await), 403);
    assert_eq!(code(s.admin.call("self.creds", &json!({})).await), 403);
    // Inside AUTH (no import crossed, so no header, or one the sender wrote): refused.
    let service = s.stack.service_client().await;
    let reply = service.request("authd.self.whoami", "{}".into()).await.unwrap();
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["error"]["code"], 403, "{answer}");
}

#[tokio::test]
async fn self_service_rights_default_to_whoami_and_creds() {
    let s = setup().await;
    let (client, _e) = login(&s.stack, "viewer", "viewer-password").await.unwrap();
    let viewer = api(&client);
    let me = viewer.call("self.whoami", &json!({})).await.unwrap();
    assert_eq!(
        me["self_service"],
        json!({"whoami": true, "creds": true, "regenerate": false, "password": false, "tokens": false, "admin": false})
    );
    viewer.call("self.creds", &json!({})).await.unwrap();
    let before = user_record(&s.stack, "acme", "viewer").await;
    assert_eq!(code(viewer.call("self.regenerate", &json!({})).await), 403);
    assert_eq!(
        code(
            viewer
                .call(
                    "self.password",
                    &json!({"current": "viewer-password", "new": "another-password"})
                )
                .await
        ),
        403
    );
    assert_eq!(code(viewer.call("self.token.create", &json!({})).await), 403);
    assert_eq!(user_record(&s.stack, "acme", "viewer").await, before);
}

#[tokio::test]
async fn regenerate_makes_the_old_creds_fail_and_the_new_ones_work() {
    let s = setup().await;
    let (client, _e) = login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    let old = api(&client).call("self.creds", &json!({})).await.unwrap()["creds"]
        .as_str()
        .unwrap()
        .to_string();
    let (old_conn, mut old_events) = s.stack.connect_creds(&old).await;
    let fresh = api(&old_conn).call("self.regenerate", &json!({})).await.unwrap();
    let fresh = fresh["creds"].as_str().unwrap().to_string();
    disconnected_within(&mut old_events, Duration::from_secs(5)).await;
    drained(&s.admin).await;
    let refused =
        async_nats::ConnectOptions::with_credentials(&old).unwrap().connect(s.stack.url()).await;
    assert!(refused.is_err(), "the old creds still connect");
    let (new_conn, _e) = s.stack.connect_creds(&fresh).await;
    let me = api(&new_conn).call("self.whoami", &json!({})).await.unwrap();
    assert_eq!(me["user"], "dev1");
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_ends_other_sessions() {
    let s = setup().await;
    // At most one reconnect each: after the change their old password fails, and endless
    // reconnects would trip the brute-force limit for dev1 from this address.
    let once =
        || ConnectOptions::with_user_and_password("dev1".into(), DEV1_PW.into()).max_reconnects(1);
    let (client, _e) = plain(&s.stack, once()).await.unwrap();
    let (_other, mut other_events) = plain(&s.stack, once()).await.unwrap();
    let before = user_record(&s.stack, "acme", "dev1").await;
    let wrong = api(&client)
        .call("self.password", &json!({"current": "not-my-password", "new": "new-password-1"}))
        .await;
    assert_eq!(code(wrong), 403);
    assert_eq!(
        user_record(&s.stack, "acme", "dev1").await,
        before,
        "a wrong password changed the store"
    );

    api(&client)
        .call("self.password", &json!({"current": DEV1_PW, "new": "new-password-1"}))
        .await
        .unwrap();
    disconnected_within(&mut other_events, Duration::from_secs(1)).await;
    let Err(e) = login(&s.stack, "dev1", DEV1_PW).await else { panic!("the old password works") };
    assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation);
    login(&s.stack, "dev1", "new-password-1").await.unwrap();
}

#[tokio::test]
async fn nats_server_accepts_the_config_with_a_default_sentinel() {
    let stack = Stack::init().await;
    let jwt = default_sentinel(&stack);
    let claims: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD.decode(jwt.split('.').nth(1).unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["nats"]["bearer_token"], true, "{claims}");
    assert_eq!(claims["nats"]["pub"]["deny"], json!([">"]), "{claims}");
    assert_eq!(claims["nats"]["sub"]["deny"], json!([">"]), "{claims}");
    let out = std::process::Command::new(common::nats_server_bin())
        .arg("-t")
        .arg("-c")
        .arg(stack.layout.config_file())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_user_and_password_alone_log_into_the_users_account() {
    let s = setup().await;
    let (client, _e) = login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    let acme = s.admin.call("account.get", &json!({"name": "acme"})).await.unwrap();
    assert_eq!(account_of(&client).await, acme["public_key"].as_str().unwrap());
    // The old way, sentinel creds next to the password, still works.
    let (old_way, _e) = s
        .stack
        .login(ConnectOptions::with_user_and_password("dev1".into(), DEV1_PW.into()))
        .await
        .unwrap();
    assert_eq!(account_of(&old_way).await, acme["public_key"].as_str().unwrap());
}

#[tokio::test]
async fn a_connection_with_no_credentials_at_all_is_refused() {
    let s = setup().await;
    let Err(e) = plain(&s.stack, ConnectOptions::new()).await else { panic!("let in") };
    assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}");
}

#[tokio::test]
async fn the_default_sentinel_alone_can_neither_publish_nor_subscribe() {
    let s = setup().await;
    let jwt = default_sentinel(&s.stack);
    // A bearer JWT needs no key; any signature will do.
    let key = std::sync::Arc::new(nkeys::KeyPair::new_user());
    let options = ConnectOptions::with_jwt(jwt, move |nonce| {
        let key = key.clone();
        async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
    });
    match plain(&s.stack, options).await {
        // The callout sees no user, password or token: refused.
        Err(e) => assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}"),
        Ok((client, mut events)) => {
            let _sub = client.subscribe("anything").await.unwrap();
            client.publish("anything", "x".into()).await.unwrap();
            client.flush().await.unwrap();
            violation(&mut events, "anything").await;
            panic!("the sentinel JWT alone connected");
        }
    }
}

/// A python with nats-py: `NATS_PY_PYTHON`, else what `scripts/ensure-nats-py` installs; `None`
/// (with the reason printed) if neither works.
async fn nats_py() -> Option<String> {
    if let Ok(python) = std::env::var("NATS_PY_PYTHON") {
        if !python.is_empty() {
            return Some(python);
        }
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-nats-py");
    let out = tokio::process::Command::new(script).output().await.ok()?;
    if !out.status.success() {
        eprintln!(
            "SKIPPED: python with nats-py cannot be installed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn nats_py_logs_in_with_a_password_alone_and_then_with_its_own_creds() {
    let Some(python) = nats_py().await else { return };
    let s = setup().await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/selfservice_creds.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(script)
            .args([s.stack.url().as_str(), "dev1", DEV1_PW])
            .arg(s.stack.dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the nats-py script hung")
    .unwrap();
    assert!(out.status.success(), "nats-py failed: {}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["callout"]["login"], "callout", "{result}");
    assert_eq!(result["creds"]["login"], "creds", "{result}");
    for login in ["callout", "creds"] {
        assert_eq!(result[login]["account"], "acme");
        assert_eq!(result[login]["user"], "dev1");
    }
}

#[tokio::test]
async fn another_tenant_taking_a_login_name_cannot_lock_its_owner_out() {
    let s = setup().await;
    let before = s.admin.call("user.list", &json!({"account": "beta"})).await.unwrap();
    // beta asks for acme's dev1: a clear 409 that names no account, and nothing is written.
    let taken = s
        .admin
        .call(
            "user.create",
            &json!({"account": "beta", "name": "dev1", "role": "dev", "password": "beta-dev1-pw"}),
        )
        .await;
    let Err(e) = taken else { panic!("beta took acme's login name") };
    assert_eq!(e.code(), Some(409));
    assert!(e.to_string().contains("unique across tenant accounts"), "{e}");
    assert!(!e.to_string().contains("acme"), "the refusal names the other account: {e}");
    assert_eq!(s.admin.call("user.list", &json!({"account": "beta"})).await.unwrap(), before);
    drained(&s.admin).await;
    // Without a password beta's dev1 is no login: allowed, and changes nothing for acme.
    s.admin
        .call("user.create", &json!({"account": "beta", "name": "dev1", "role": "dev"}))
        .await
        .unwrap();
    let later = s
        .admin
        .call(
            "user.update",
            &json!({"account": "beta", "name": "dev1", "password": "beta-dev1-pw"}),
        )
        .await;
    assert_eq!(later.map_err(|e| e.code()).unwrap_err(), Some(409), "a password given later");
    // acme's dev1 still logs in with its bare name and with name@account.
    login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    login(&s.stack, "dev1@acme", DEV1_PW).await.unwrap();

    // The name is free once acme's dev1 has no password: beta's dev1 takes it, and the bare
    // name now logs in beta's user (acme's old password does not).
    let set_password = |account: &str, password: &str| json!({"account": account, "name": "dev1", "password": password});
    s.admin.call("user.update", &set_password("acme", "")).await.unwrap();
    s.admin.call("user.update", &set_password("beta", "beta-dev1-pw")).await.unwrap();
    let taken = s.admin.call("user.update", &set_password("acme", DEV1_PW)).await;
    assert_eq!(taken.map_err(|e| e.code()).unwrap_err(), Some(409), "now beta holds the name");
    drained(&s.admin).await;
    login(&s.stack, "dev1", "beta-dev1-pw").await.unwrap();
    login(&s.stack, "dev1@beta", "beta-dev1-pw").await.unwrap();
    assert!(login(&s.stack, "dev1", DEV1_PW).await.is_err(), "acme's dev1 has no password");
    // Deleting beta (with its users) frees the name again.
    s.admin.call("account.delete", &json!({"name": "beta", "cascade": true})).await.unwrap();
    s.admin.call("user.update", &set_password("acme", DEV1_PW)).await.unwrap();
    drained(&s.admin).await;
    login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    // And deleting the user frees it.
    s.admin.call("user.delete", &json!({"account": "acme", "name": "dev1"})).await.unwrap();
    s.admin.call("account.create", &json!({"name": "gamma"})).await.unwrap();
    let gamma = json!({"account": "gamma", "name": "dev1", "password": "gamma-dev1-pw"});
    s.admin.call("user.create", &gamma).await.unwrap();
}

#[tokio::test]
async fn login_records_are_only_ever_released_by_their_own_account() {
    let s = setup().await;
    let db = s.stack.authority().db().clone();
    let record = |name: &str, accounts: &[&str]| LoginRecord {
        name: UserName::new(name).unwrap(),
        accounts: accounts.iter().map(|a| AccountName::new(a).unwrap()).collect(),
    };
    let put = |login: LoginRecord| {
        let db = db.clone();
        async move {
            let mut batch = Batch::new();
            batch.put(&login);
            db.commit(batch).await.unwrap();
        }
    };
    let stored = |name: &'static str| {
        let db = db.clone();
        async move { db.get::<LoginRecord>(name).await.unwrap() }
    };
    assert_eq!(stored("dev1").await, Some(record("dev1", &["acme"])), "made with the password");
    // A record acme left behind (an interrupted change) does not lock acme out of its name,
    // and still keeps it from beta.
    put(record("dev9", &["acme"])).await;
    let dev9 =
        |account: &str| json!({"account": account, "name": "dev9", "password": "dev9-password"});
    let taken = s.admin.call("user.create", &dev9("beta")).await;
    assert_eq!(taken.map_err(|e| e.code()).unwrap_err(), Some(409));
    s.admin.call("user.create", &dev9("acme")).await.unwrap();
    // Taking acme's password away removes only a record that names acme.
    put(record("dev2", &["beta"])).await;
    let no_password = json!({"account": "acme", "name": "dev2", "password": ""});
    s.admin.call("user.update", &no_password).await.unwrap();
    assert_eq!(stored("dev2").await, Some(record("dev2", &["beta"])));
    // A name two tenants had before names were unique: acme deleting its user leaves beta's.
    put(record("dev9", &["acme", "beta"])).await;
    s.admin.call("user.delete", &json!({"account": "acme", "name": "dev9"})).await.unwrap();
    assert_eq!(stored("dev9").await, Some(record("dev9", &["beta"])));
}

#[tokio::test]
async fn dev1_makes_lists_and_revokes_only_its_own_tokens() {
    let s = setup().await;
    s.admin.call("token.create", &json!({"account": "acme", "user": "dev2"})).await.unwrap();
    let (client, _e) = login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    let dev1 = api(&client);
    let made = dev1.call("self.token.create", &json!({"description": "ci"})).await.unwrap();
    assert_eq!((made["account"].as_str(), made["user"].as_str()), (Some("acme"), Some("dev1")));
    let token = made["token"].as_str().unwrap().to_string();
    let listed = dev1.call("self.token.list", &json!({})).await.unwrap();
    assert!(listed.get("next").is_none(), "one token is one page: {listed}");
    let listed = listed["items"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "dev2's token is not dev1's: {listed:?}");
    assert!(listed[0].get("token").is_none(), "a list shows no secret");

    let (by_token, _e) = plain(&s.stack, ConnectOptions::with_token(token.clone())).await.unwrap();
    let me = api(&by_token).call("self.whoami", &json!({})).await.unwrap();
    assert_eq!(me["user"], "dev1");
    by_token.drain().await.unwrap();
    dev1.call("self.token.revoke", &json!({"id": made["id"]})).await.unwrap();
    let Err(e) = plain(&s.stack, ConnectOptions::with_token(token)).await else {
        panic!("a revoked token still logs in")
    };
    assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation);
}

#[tokio::test]
async fn a_sealed_creds_reply_opens_only_with_the_clients_key_and_shows_no_creds() {
    let s = setup().await;
    let (client, _e) = login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    let mine = nkeys::XKey::new();
    let body = json!({ "xkey": mine.public_key() }).to_string();
    let reply = client.request("authd.self.creds", body.into()).await.unwrap();
    let text = String::from_utf8(reply.payload.to_vec()).unwrap();
    let sealed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sealed.as_object().unwrap().len(), 2, "only sealed and sender: {text}");
    let sender = nkeys::XKey::from_public_key(sealed["sender"].as_str().unwrap()).unwrap();
    let bytes =
        data_encoding::BASE64.decode(sealed["sealed"].as_str().unwrap().as_bytes()).unwrap();
    assert!(nkeys::XKey::new().open(&bytes, &sender).is_err(), "another key opens it");
    let opened: Value = serde_json::from_slice(&mine.open(&bytes, &sender).unwrap()).unwrap();
    let creds = opened["creds"].as_str().unwrap();
    // Nothing of the creds in the reply as sent: not the JWT, not the seed, not the armour.
    let jwt = creds.lines().nth(1).unwrap();
    let seed = creds.lines().find(|l| l.starts_with("SU")).unwrap();
    for secret in [jwt, seed, "BEGIN NATS"] {
        assert!(!text.contains(secret), "the reply shows part of the creds");
    }
    let (direct, _e) = s.stack.connect_creds(creds).await;
    assert_eq!(api(&direct).call("self.whoami", &json!({})).await.unwrap()["login"], "creds");
    // A key that is not a curve key is refused before anything happens.
    let bad = api(&client).call("self.regenerate", &json!({"xkey": mine.seed().unwrap()})).await;
    assert_eq!(code(bad), 400);
    assert!(api(&direct).call("self.whoami", &json!({})).await.is_ok(), "a bad xkey regenerated");
}

/// A role `lead` in acme that may publish `publish` with `self_service` rights, and its user
/// `boss` with the password `boss-password`.
async fn boss(s: &Setup, publish: &[&str], self_service: serde_json::Value) {
    s.admin
        .call(
            "role.create",
            &json!({ "account": "acme", "name": "lead", "publish": { "allow": publish },
                     "subscribe": { "allow": ["_INBOX.>"] }, "self_service": self_service }),
        )
        .await
        .unwrap();
    let boss =
        json!({"account": "acme", "name": "boss", "role": "lead", "password": "boss-password"});
    s.admin.call("user.create", &boss).await.unwrap();
}

#[tokio::test]
async fn a_tenant_admin_manages_its_own_account_and_nothing_beyond_it() {
    let s = setup().await;
    boss(&s, &["authd.self.>", "authd.account.>"], json!({ "admin": true })).await;
    let (client, _events) = login(&s.stack, "boss", "boss-password").await.unwrap();
    let boss = api(&client);
    assert_eq!(boss.call("self.whoami", &json!({})).await.unwrap()["tenant_admin"], true);

    // Within acme: create and delete a user.
    let made = boss
        .call(
            "self.admin.user.create",
            &json!({"name": "dev3", "role": "dev", "password": "dev3-password"}),
        )
        .await
        .unwrap();
    assert_eq!(made["account"], "acme");
    login(&s.stack, "dev3", "dev3-password").await.unwrap();
    let users = boss.call("self.admin.user.list", &json!({})).await.unwrap();
    assert!(users["items"].as_array().unwrap().iter().all(|u| u["account"] == "acme"));
    boss.call("self.admin.user.delete", &json!({"name": "dev3"})).await.unwrap();

    // Beyond acme: refused with clear errors, nothing changed.
    let beta_users = s.admin.call("user.list", &json!({"account": "beta"})).await.unwrap();
    let acme = s.admin.call("account.get", &json!({"name": "acme"})).await.unwrap();
    let b1 = user_record(&s.stack, "beta", "b1").await;
    let attempts = [
        ("self.admin.user.create", json!({"account": "beta", "name": "x", "role": "dev"}), 400),
        ("self.admin.user.delete", json!({"name": "b1"}), 404),
        ("self.admin.user.update", json!({"name": "b1", "active": false}), 404),
        ("self.admin.token.create", json!({"user": "b1"}), 404),
        ("self.admin.role.update", json!({"name": "lead", "publish": {"allow": [">"]}}), 403),
        ("self.admin.role.delete", json!({"name": "lead"}), 403),
        ("self.admin.role.create", json!({"name": "r2", "self_service": {"admin": true}}), 400),
        ("self.admin.role.create", json!({"name": "r3", "limits": {"connections": 5}}), 400),
    ];
    for (endpoint, body, want) in attempts {
        assert_eq!(code(boss.call(endpoint, &body).await), want, "{endpoint} {body}");
    }
    // Account limits are the operator's: the account API is not even imported into acme.
    let short = AdminClient::new(client.clone(), API_PREFIX, Duration::from_secs(1));
    let body = json!({"name": "acme", "limits": {"connections": 1}});
    let limits = short.call("account.update", &body).await;
    assert!(limits.unwrap_err().code().is_none(), "something answered account.update");
    assert_eq!(s.admin.call("user.list", &json!({"account": "beta"})).await.unwrap(), beta_users);
    assert_eq!(s.admin.call("account.get", &json!({"name": "acme"})).await.unwrap(), acme);
    assert_eq!(user_record(&s.stack, "beta", "b1").await, b1);

    // A plain tenant user reaches no admin endpoint.
    let (dev1, _e) = login(&s.stack, "dev1", DEV1_PW).await.unwrap();
    for endpoint in ["self.admin.user.list", "self.admin.user.create", "self.admin.role.list"] {
        let body = json!({"name": "dev9"});
        let body = if endpoint.ends_with("list") { json!({}) } else { body };
        assert_eq!(code(api(&dev1).call(endpoint, &body).await), 403, "{endpoint}");
    }
}

/// An example built next to this test (`cargo test` builds the examples), or `None`.
/// An example built as a program. `scripts/test` builds them and names the directory in
/// `NATS_AUTHD_EXAMPLES`, and then a missing one is a failure; a bare `cargo test` builds
/// examples as test harnesses only, so this looks next to the test binary and may skip.
fn example(name: &str) -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("NATS_AUTHD_EXAMPLES") {
        let path = std::path::Path::new(&dir).join(name);
        assert!(path.is_file(), "NATS_AUTHD_EXAMPLES has no {name}: {}", path.display());
        return Some(path);
    }
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.is_file().then_some(path)
}

#[tokio::test]
async fn the_examples_fetch_sealed_creds_to_a_private_file_and_create_a_user_as_tenant_admin() {
    let (Some(self_creds), Some(tenant_admin)) = (example("self_creds"), example("tenant_admin"))
    else {
        eprintln!(
            "SKIPPED: examples not built (`scripts/test` builds them; or `cargo build --examples`)"
        );
        return;
    };
    let s = setup().await;
    let out = s.stack.dir.path().join("dev1.creds");
    let run = tokio::process::Command::new(self_creds)
        .args(["dev1", DEV1_PW])
        .arg(&out)
        .arg(s.stack.url())
        .kill_on_drop(true)
        .output();
    let ran = tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(String::from_utf8_lossy(&ran.stdout).contains("\"login\": \"creds\""));

    boss(&s, &["authd.self.>"], json!({ "admin": true })).await;
    let run = tokio::process::Command::new(tenant_admin)
        .args(["boss", "boss-password", "dev3", "dev3-password", "dev"])
        .arg(s.stack.url())
        .kill_on_drop(true)
        .output();
    let ran = tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(said.contains("acme has 5 users: boss, dev1, dev2, dev3, viewer"), "{said}");
    login(&s.stack, "dev3", "dev3-password").await.unwrap();
}

/// Replies as large as a default nats-server allows: the offline tests below use it where the
/// byte budget is not what they test.
const ROOMY: usize = 1024 * 1024;

/// A manager on a store, no server: tenants `acme-x`, `acme` and `acme0` (the keys of the
/// first sort right before acme's, of the last right after), each with a tenant admin `boss`
/// (role `lead`, with 3 tokens), roles `r0`..`r3`, users `u0`..`u6` (one token each). The
/// caller is acme's boss, as a callout login.
async fn offline_tenants() -> (Stack, Manager, Caller) {
    let stack = Stack::init().await;
    let m = stack.manager();
    let now = model::now();
    for account in ["acme-x", "acme", "acme0"] {
        let acc = account_name(account);
        m.create_account(CreateAccount::new(acc.clone()), now).await.unwrap();
        let mut lead = CreateRole::new(acc.clone(), role_name("lead"));
        lead.self_service = Some(SelfService { admin: true, tokens: true, ..Default::default() });
        m.create_role(lead, now).await.unwrap();
        for i in 0..4 {
            let role = CreateRole::new(acc.clone(), role_name(&format!("r{i}")));
            m.create_role(role, now).await.unwrap();
        }
        let boss = CreateUser {
            role: Some("lead".into()),
            ..CreateUser::new(acc.clone(), user_name("boss"))
        };
        m.create_user(boss, now).await.unwrap();
        let mut token_users = vec!["boss"; 3];
        let names: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
        for name in &names {
            m.create_user(CreateUser::new(acc.clone(), user_name(name)), now).await.unwrap();
            token_users.push(name);
        }
        for user in token_users {
            let token =
                CreateToken { account: acc.clone(), user: user_name(user), description: None };
            m.create_token(token, now).await.unwrap();
        }
    }
    let acme = stack.authority().account(&account_name("acme")).await.unwrap();
    let caller = m.caller(acme.public_key(), "boss", None, now).await.unwrap();
    (stack, m, caller)
}

/// Follows the pages `list` answers from the first (`None`) to the last: every page, checked
/// to move on and to end, bounded so a cursor that never ends fails instead of spinning.
async fn pages<T, F, Fut>(mut list: F) -> Vec<Page<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, ManageError>>,
{
    let mut pages: Vec<Page<T>> = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let page = list(cursor.clone()).await.unwrap();
        let next = page.next.clone();
        pages.push(page);
        match next {
            None => return pages,
            Some(next) => {
                assert_ne!(cursor.as_ref(), Some(&next), "the cursor did not move");
                cursor = Some(next);
            }
        }
    }
    panic!("a list of a few items did not end in 100 pages")
}

fn invalid<T: std::fmt::Debug>(result: Result<T, ManageError>) -> String {
    match result {
        Err(ManageError::Invalid(message)) => message,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tenant_admins_user_list_pages_within_its_own_account_and_its_byte_budget() {
    let (_stack, m, caller) = offline_tenants().await;
    let (m, c) = (&m, &caller);
    let want = m.list_users(UserListRef::new(account_name("acme")), ROOMY).await.unwrap();
    assert_eq!(want.items.len(), 8);
    assert!(want.next.is_none());

    let got = pages(move |cursor| {
        m.tenant_list_users(c, TenantListUsers { limit: Some(3), cursor }, ROOMY)
    })
    .await;
    assert_eq!(got.iter().map(|p| p.items.len()).collect::<Vec<_>>(), [3, 3, 2]);
    let joined: Vec<UserView> = got.into_iter().flat_map(|p| p.items).collect();
    assert_eq!(joined, want.items, "the pages join to the whole list, in order");

    // A reply smaller than the server allows is cut by bytes, below `limit`.
    let one = serde_json::to_vec(&want.items[0]).unwrap().len() + 1;
    let small = PAGE_ENVELOPE_BYTES + 2 * one + 2;
    let got = pages(move |cursor| {
        m.tenant_list_users(c, TenantListUsers { limit: Some(3), cursor }, small)
    })
    .await;
    for page in &got {
        assert!(!page.items.is_empty() && page.items.len() <= 2, "{} items", page.items.len());
        assert!(serde_json::to_vec(page).unwrap().len() <= small, "a page exceeds max payload");
    }
    let joined: Vec<UserView> = got.into_iter().flat_map(|p| p.items).collect();
    assert_eq!(joined, want.items);

    // Bad limits: the operator list's errors, word for word.
    for limit in [0, MAX_PAGE + 1] {
        let tenant = invalid(
            m.tenant_list_users(c, TenantListUsers { limit: Some(limit), cursor: None }, ROOMY)
                .await,
        );
        let operator = UserListRef { limit: Some(limit), ..UserListRef::new(account_name("acme")) };
        assert_eq!(tenant, invalid(m.list_users(operator, ROOMY).await));
        assert!(tenant.contains("out of range"), "{tenant}");
    }
    // Cursors from beyond acme's users are refused: the neighbours' keys, a climb out, the
    // bare prefix, nothing.
    for cursor in ["acme0/u0", "acme-x/u6", "../acme0/u0", "acme", "acme/", "", "acme0/"] {
        let req = TenantListUsers { limit: Some(3), cursor: Some(cursor.into()) };
        let message = invalid(m.tenant_list_users(c, req, ROOMY).await);
        assert!(message.contains("is not from this list"), "{cursor:?}: {message}");
    }
    // A cursor inside acme's prefix, however crafted, reads acme's users only.
    for cursor in ["acme/../acme0/u0", "acme/u6", "acme/u6\u{10ffff}", "acme/\u{7f}"] {
        let req = TenantListUsers { limit: Some(MAX_PAGE), cursor: Some(cursor.into()) };
        let page = m.tenant_list_users(c, req, ROOMY).await.unwrap();
        assert!(page.items.iter().all(|u| u.account == "acme"), "{cursor:?}: {:?}", page.items);
        assert!(page.next.is_none(), "{cursor:?}");
    }
    let req = TenantListUsers { limit: None, cursor: Some("acme/../acme0/u0".into()) };
    assert_eq!(m.tenant_list_users(c, req, ROOMY).await.unwrap().items, want.items);
    let req = TenantListUsers { limit: None, cursor: Some("acme/u6".into()) };
    assert!(m.tenant_list_users(c, req, ROOMY).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn a_tenant_admins_role_and_token_lists_and_its_own_tokens_page_within_its_account() {
    let (_stack, m, caller) = offline_tenants().await;
    let (m, c) = (&m, &caller);
    let acme = account_name("acme");

    let want = m.list_roles(RoleListRef::new(acme.clone()), ROOMY).await.unwrap().items;
    assert_eq!(want.len(), 5);
    let got = pages(move |cursor| {
        m.tenant_list_roles(c, TenantListRoles { limit: Some(2), cursor }, ROOMY)
    })
    .await;
    assert_eq!(got.iter().map(|p| p.items.len()).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(got.into_iter().flat_map(|p| p.items).collect::<Vec<_>>(), want);
    let req = TenantListRoles { limit: Some(2), cursor: Some("acme0/lead".into()) };
    assert!(invalid(m.tenant_list_roles(c, req, ROOMY).await).contains("is not from this list"));

    // Tokens are keyed by id, not by account: the account filter comes before the page, so
    // any cursor (another account's token id too) only moves the start within acme's.
    let want = m.list_tokens(ListTokens::new(acme.clone(), None), ROOMY).await.unwrap().items;
    assert_eq!(want.len(), 10);
    let got = pages(move |cursor| {
        let req = TenantListTokens { user: None, limit: Some(4), cursor };
        m.tenant_list_tokens(c, req, ROOMY)
    })
    .await;
    assert_eq!(got.iter().map(|p| p.items.len()).collect::<Vec<_>>(), [4, 4, 2]);
    assert_eq!(got.into_iter().flat_map(|p| p.items).collect::<Vec<_>>(), want);
    let others = m.list_tokens(ListTokens::new(account_name("acme0"), None), ROOMY).await.unwrap();
    for other in &others.items {
        let req = TenantListTokens { user: None, limit: None, cursor: Some(other.id.clone()) };
        let page = m.tenant_list_tokens(c, req, ROOMY).await.unwrap();
        let expected: Vec<_> = want.iter().filter(|t| t.id > other.id).cloned().collect();
        assert_eq!(page.items, expected, "cursor {:?}", other.id);
    }
    let req = TenantListTokens { user: Some(user_name("u1")), limit: Some(1), cursor: None };
    let page = m.tenant_list_tokens(c, req, ROOMY).await.unwrap();
    assert_eq!((page.items.len(), page.items[0].user.as_str(), page.next), (1, "u1", None));
    let req = TenantListTokens { user: None, limit: Some(0), cursor: None };
    assert!(invalid(m.tenant_list_tokens(c, req, ROOMY).await).contains("out of range"));

    // The caller's own tokens: 3 of boss's, 2 a page.
    let mine: Vec<_> = want.iter().filter(|t| t.user == "boss").cloned().collect();
    assert_eq!(mine.len(), 3);
    let got =
        pages(move |cursor| m.list_own_tokens(c, SelfListTokens { limit: Some(2), cursor }, ROOMY))
            .await;
    assert_eq!(got.iter().map(|p| p.items.len()).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(got.into_iter().flat_map(|p| p.items).collect::<Vec<_>>(), mine);
    let req = SelfListTokens { limit: Some(MAX_PAGE + 1), cursor: None };
    assert!(invalid(m.list_own_tokens(c, req, ROOMY).await).contains("out of range"));
}

#[tokio::test]
async fn self_service_lists_page_over_nats_and_the_client_follows_them() {
    let s = setup().await;
    boss(&s, &["authd.self.>"], json!({ "admin": true, "tokens": true })).await;
    for i in 0..4 {
        let body = json!({"account": "acme", "name": format!("u{i}"), "role": "plain"});
        s.admin.call("user.create", &body).await.unwrap();
    }
    for user in ["boss", "boss", "dev1", "dev2", "u0"] {
        s.admin.call("token.create", &json!({"account": "acme", "user": user})).await.unwrap();
    }
    s.admin.call("token.create", &json!({"account": "beta", "user": "b1"})).await.unwrap();
    let (client, _events) = login(&s.stack, "boss", "boss-password").await.unwrap();
    let boss = api(&client);

    // acme has 8 users: boss, dev1, dev2, u0-u3, viewer. Pages of 3, as raw JSON.
    let want = s.admin.call("user.list", &json!({"account": "acme"})).await.unwrap();
    let want = want["items"].as_array().unwrap().clone();
    assert_eq!(want.len(), 8);
    let mut joined = Vec::new();
    let mut sizes = Vec::new();
    let mut body = json!({"limit": 3});
    for _ in 0..10 {
        let page = boss.call("self.admin.user.list", &body).await.unwrap();
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        joined.extend(items.iter().cloned());
        match page.get("next") {
            None => break,
            Some(next) => body["cursor"] = next.clone(),
        }
    }
    assert_eq!(sizes, [3, 3, 2], "the last page carries no `next`");
    assert_eq!(joined, want, "the pages join to the whole list, in order");

    // Bad limits and foreign cursors: the same 400 and message as the operator's list.
    let message = |e: ClientError| match e {
        ClientError::Service { code: 400, kind, message } if kind == "invalid" => message,
        other => panic!("expected a 400, got {other}"),
    };
    for (mine, operator) in [
        (json!({"limit": 0}), json!({"account": "acme", "limit": 0})),
        (json!({"limit": 1001}), json!({"account": "acme", "limit": 1001})),
        (json!({"cursor": "beta/b1"}), json!({"account": "acme", "cursor": "beta/b1"})),
    ] {
        let tenant = message(boss.call("self.admin.user.list", &mine).await.unwrap_err());
        let admin = message(s.admin.call("user.list", &operator).await.unwrap_err());
        assert_eq!(tenant, admin, "{mine}");
    }
    // No other account by a crafted cursor or a field naming it.
    let climbed = boss.call("self.admin.user.list", &json!({"cursor": "acme/../beta/b1"})).await;
    assert_eq!(climbed.unwrap()["items"].as_array().unwrap(), &want);
    let past = boss.call("self.admin.user.list", &json!({"cursor": "acme/viewer"})).await.unwrap();
    assert_eq!(past, json!({"items": []}), "nothing after acme's last user, beta's neither");
    let named = boss.call("self.admin.user.list", &json!({"account": "beta"})).await;
    assert_eq!(code(named), 400);

    // The typed client follows every page of each self list.
    let users = boss.list_all(&TenantListUsers { limit: Some(3), cursor: None }).await.unwrap();
    assert_eq!(serde_json::to_value(&users).unwrap(), Value::Array(want));
    let roles = boss.list_all(&TenantListRoles { limit: Some(1), cursor: None }).await.unwrap();
    let all_roles = s.admin.call("role.list", &json!({"account": "acme"})).await.unwrap();
    assert_eq!(serde_json::to_value(&roles).unwrap(), all_roles["items"]);
    let tokens = TenantListTokens { limit: Some(2), ..Default::default() };
    let tokens = boss.list_all(&tokens).await.unwrap();
    let all_tokens = s.admin.call("token.list", &json!({"account": "acme"})).await.unwrap();
    assert_eq!(serde_json::to_value(tokens).unwrap(), all_tokens["items"]);
    assert_eq!(all_tokens["items"].as_array().unwrap().len(), 5, "beta's token is not listed");
    let mine = boss.list_all(&SelfListTokens { limit: Some(1), cursor: None }).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|t| t.user == "boss" && t.account == "acme"));
    let first = boss.send(&SelfListTokens { limit: Some(1), cursor: None }).await.unwrap();
    assert_eq!((first.items.len(), first.next.is_some()), (1, true));
}
