//! Logging in to NATS through the callout with a password or an API token.

mod common;

use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};
use common::{account_of, disconnected_within, drained, violation, Running, Stack};
use futures::StreamExt;
use nats_authd::client::AdminClient;
use serde_json::{json, Value};

const DEV1_PASSWORD: &str = "dev1-password";

struct Setup {
    stack: Stack,
    service: Option<Running>,
    admin: AdminClient,
    acme_key: String,
}

/// acme with role `dev` (own `user.<name>.>` subjects, `shared.>`, and USER.INFO so tests can
/// ask which account they are in), users dev1 and dev2 with passwords.
async fn setup(xkey: bool) -> Setup {
    let mut stack = Stack::init_with(xkey).await;
    stack.start_server().await;
    let service = stack.serve();
    let admin = stack.admin().await;
    let acme = admin.call("account.create", &json!({ "name": "acme" })).await.unwrap();
    admin
        .call(
            "role.create",
            &json!({ "account": "acme", "name": "dev",
                     "publish": { "allow": ["user.{{name()}}.>", "shared.>", "$SYS.REQ.USER.INFO"] },
                     "subscribe": { "allow": ["user.{{name()}}.>", "shared.>", "_INBOX.>"] } }),
        )
        .await
        .unwrap();
    for (name, password) in [("dev1", DEV1_PASSWORD), ("dev2", "dev2-password")] {
        admin
            .call(
                "user.create",
                &json!({ "account": "acme", "name": name, "role": "dev", "password": password }),
            )
            .await
            .unwrap();
    }
    drained(&admin).await;
    Setup {
        stack,
        service: Some(service),
        admin,
        acme_key: acme["public_key"].as_str().unwrap().to_string(),
    }
}

fn password(user: &str, pass: &str) -> ConnectOptions {
    ConnectOptions::with_user_and_password(user.into(), pass.into())
}

async fn refused(stack: &Stack, options: ConnectOptions) {
    let Err(err) = stack.login(options).await else { panic!("the login was let in") };
    assert_eq!(err.kind(), ConnectErrorKind::AuthorizationViolation, "{err}");
}

async fn holds_exactly_its_role(
    client: &async_nats::Client,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut own = client.subscribe("user.dev1.>").await.unwrap();
    client.flush().await.unwrap();
    client.publish("user.dev1.inbox", "mine".into()).await.unwrap();
    client.flush().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), own.next()).await.unwrap().unwrap();
    assert_eq!(msg.payload.as_ref(), b"mine");
    client.publish("user.dev2.inbox", "theirs".into()).await.unwrap();
    client.flush().await.unwrap();
    violation(events, "user.dev2.inbox").await;
    client.publish("other.subject", "x".into()).await.unwrap();
    client.flush().await.unwrap();
    violation(events, "other.subject").await;
}

#[tokio::test]
async fn a_password_login_lands_in_the_account_with_the_role_sealed() {
    let s = setup(true).await;
    let (client, mut events) = s.stack.login(password("dev1", DEV1_PASSWORD)).await.unwrap();
    assert_eq!(account_of(&client).await, s.acme_key);
    holds_exactly_its_role(&client, &mut events).await;
}

#[tokio::test]
async fn a_password_login_works_without_xkey_too() {
    let s = setup(false).await;
    let (client, mut events) = s.stack.login(password("dev1@acme", DEV1_PASSWORD)).await.unwrap();
    assert_eq!(account_of(&client).await, s.acme_key);
    holds_exactly_its_role(&client, &mut events).await;
}

#[tokio::test]
async fn api_tokens_and_secrets_in_auth_token_only() {
    let s = setup(true).await;
    let created = s
        .admin
        .call("token.create", &json!({ "account": "acme", "user": "dev1", "description": "ci" }))
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("authd_"));
    let listed = s.admin.call("token.list", &json!({ "account": "acme" })).await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&token[23..]), "a listed token shows its secret");

    let (client, mut events) =
        s.stack.login(ConnectOptions::with_token(token.clone())).await.unwrap();
    assert_eq!(account_of(&client).await, s.acme_key);
    holds_exactly_its_role(&client, &mut events).await;

    // What nats-py sends next to creds: the secret in auth_token only.
    let (client, _) =
        s.stack.login(ConnectOptions::with_token(format!("dev1:{DEV1_PASSWORD}"))).await.unwrap();
    assert_eq!(account_of(&client).await, s.acme_key);

    // A revoked token no longer works, and its live connection ends.
    let (live, mut live_events) =
        s.stack.login(ConnectOptions::with_token(token.clone())).await.unwrap();
    s.admin.call("token.revoke", &json!({ "id": created["id"] })).await.unwrap();
    disconnected_within(&mut live_events, Duration::from_secs(2)).await;
    refused(&s.stack, ConnectOptions::with_token(token)).await;
    drop(live);
}

#[tokio::test]
async fn refusals_are_audited_by_category_and_all_look_alike_to_the_client() {
    let s = setup(true).await;
    s.admin.call("account.create", &json!({ "name": "globex" })).await.unwrap();
    s.admin
        .call(
            "user.create",
            &json!({ "account": "globex", "name": "g1", "password": "g1-password" }),
        )
        .await
        .unwrap();
    s.admin
        .call("user.update", &json!({ "account": "acme", "name": "dev2", "active": false }))
        .await
        .unwrap();
    s.admin.call("account.update", &json!({ "name": "globex", "active": false })).await.unwrap();
    drained(&s.admin).await;
    let mut audit = s.admin.nats().subscribe("authd.events.auth.>").await.unwrap();
    s.admin.nats().flush().await.unwrap();

    let attempts = [
        (password("dev1", "wrong-password"), "bad_secret"),
        (password("nobody", "whatever-pass"), "unknown_user"),
        (password("dev2", "dev2-password"), "inactive"),
        (password("g1", "g1-password"), "inactive"),
        (ConnectOptions::with_token("authd_aaaaaaaaaaaaaaaa_bbbb".into()), "unknown_user"),
    ];
    for (options, category) in attempts {
        refused(&s.stack, options).await;
        let event =
            tokio::time::timeout(Duration::from_secs(5), audit.next()).await.unwrap().unwrap();
        assert_eq!(event.subject.as_str(), "authd.events.auth.refused");
        let event: Value = serde_json::from_slice(&event.payload).unwrap();
        assert_eq!(event["category"], category, "{event}");
        assert!(!event.to_string().contains("password"), "{event}");
    }
    s.stack.login(password("dev1", DEV1_PASSWORD)).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), audit.next()).await.unwrap().unwrap();
    assert_eq!(event.subject.as_str(), "authd.events.auth.allowed");
    let event: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!((event["account"].as_str(), event["user"].as_str()), (Some("acme"), Some("dev1")));
    assert!(event["latency_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn disabling_a_connected_user_ends_it_within_a_second() {
    let s = setup(true).await;
    let (client, mut events) = s.stack.login(password("dev1", DEV1_PASSWORD)).await.unwrap();
    client.flush().await.unwrap();
    let started = std::time::Instant::now();
    s.admin
        .call("user.update", &json!({ "account": "acme", "name": "dev1", "active": false }))
        .await
        .unwrap();
    disconnected_within(&mut events, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    refused(&s.stack, password("dev1", DEV1_PASSWORD)).await;

    // A new password also ends live sessions, and the old password stops working.
    let (_c, mut events) = s.stack.login(password("dev2", "dev2-password")).await.unwrap();
    s.admin
        .call(
            "user.update",
            &json!({ "account": "acme", "name": "dev2", "password": "dev2-new-password" }),
        )
        .await
        .unwrap();
    disconnected_within(&mut events, Duration::from_secs(1)).await;
    refused(&s.stack, password("dev2", "dev2-password")).await;
    s.stack.login(password("dev2", "dev2-new-password")).await.unwrap();
}

/// Defect B1: sessions to kick lived in memory only, so a restart forgot them.
#[tokio::test]
async fn a_login_made_before_a_clean_restart_is_still_kicked_when_its_user_is_disabled() {
    let mut s = setup(true).await;
    let (client, mut events) = s.stack.login(password("dev1", DEV1_PASSWORD)).await.unwrap();
    client.flush().await.unwrap();
    s.service.take().unwrap().stop().await.unwrap();
    s.service = Some(s.stack.serve());
    let admin = s.stack.admin().await;
    let started = std::time::Instant::now();
    admin
        .call("user.update", &json!({ "account": "acme", "name": "dev1", "active": false }))
        .await
        .unwrap();
    disconnected_within(&mut events, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    refused(&s.stack, password("dev1", DEV1_PASSWORD)).await;
}

const BIN: &str = env!("CARGO_BIN_EXE_nats-authd");

/// `nats-authd serve` as its own process, logging to `log`.
fn serve_process(stack: &Stack, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(BIN)
        .args(["--log", "info", "serve", "--data-dir"])
        .arg(&stack.layout.data_dir)
        .args(["--nats-url", &stack.url()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Defect B1: a kill -9 right after answering must not lose the session either.
#[tokio::test]
async fn a_login_made_before_a_kill_9_is_still_kicked_when_its_user_is_deleted() {
    let mut stack = Stack::init_with(true).await;
    stack.start_server().await;
    {
        let manager = stack.manager();
        let now = nats_authd::model::now();
        manager
            .create_account(serde_json::from_value(json!({ "name": "acme" })).unwrap(), now)
            .await
            .unwrap();
        let body = json!({ "account": "acme", "name": "dev1", "password": DEV1_PASSWORD });
        manager.create_user(serde_json::from_value(body).unwrap(), now).await.unwrap();
    }
    stack.release_store();
    let mut first = serve_process(&stack, &stack.dir.path().join("serve-1.log"));
    let admin = stack.admin().await;
    drained(&admin).await;
    let (client, mut events) = stack.login(password("dev1", DEV1_PASSWORD)).await.unwrap();
    client.flush().await.unwrap();
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = serve_process(&stack, &stack.dir.path().join("serve-2.log"));
    let admin = stack.admin().await;
    let started = std::time::Instant::now();
    admin.call("user.delete", &json!({ "account": "acme", "name": "dev1" })).await.unwrap();
    disconnected_within(&mut events, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn repeated_failures_are_refused_without_hashing() {
    let s = setup(true).await;
    for _ in 0..5 {
        refused(&s.stack, password("dev1", "not-the-password")).await;
    }
    // Locked for the window, even with the right password.
    refused(&s.stack, password("dev1", DEV1_PASSWORD)).await;
    let status = s.admin.call("status", &json!({})).await.unwrap();
    assert!(status["callout"]["rate_limited"].as_u64().unwrap() >= 1, "{status}");
    // Another user is not affected.
    s.stack.login(password("dev2", "dev2-password")).await.unwrap();
}

/// A request as a server would send it, signed by `signer`, with `edit` applied to its claims.
fn request_token(
    signer: &nkeys::KeyPair,
    edit: impl FnOnce(&mut nats_authd::claims::Claims<nats_authd::claims::AuthorizationRequest>),
) -> String {
    use nats_authd::claims::{AuthorizationRequest, Claims, ServerId};
    let now = nats_authd::model::now();
    let server = ServerId {
        name: "evil".into(),
        host: "127.0.0.1".into(),
        id: signer.public_key(),
        ..Default::default()
    };
    let mut body = AuthorizationRequest::new(server, nkeys::KeyPair::new_user().public_key());
    body.connect_options.username = "dev1".into();
    body.connect_options.password = DEV1_PASSWORD.into();
    let mut claims = Claims::new(nkeys::KeyPair::new_user().public_key(), body, now);
    claims.audience = Some("nats-authorization-request".into());
    claims.expires = Some(now + 2);
    edit(&mut claims);
    nats_authd::claims::encode(&claims, signer).unwrap_or_else(|_| {
        // Kinds the encoder refuses to sign are signed by hand, as an attacker would.
        let payload = serde_json::to_vec(&claims).unwrap();
        let input = format!(
            "{}.{}",
            data_encoding::BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
            data_encoding::BASE64URL_NOPAD.encode(&payload)
        );
        let sig = signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", data_encoding::BASE64URL_NOPAD.encode(&sig))
    })
}

#[tokio::test]
async fn hostile_requests_never_authorize_anyone_and_never_crash_the_service() {
    let s = setup(true).await;
    let service = s.stack.service_client().await;
    let server_key = nkeys::KeyPair::new_server();
    let account_key = nkeys::KeyPair::new_account();
    let now = nats_authd::model::now();
    let flip = |token: String| {
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let attacker_xkey = nkeys::XKey::new();
    let stranger_xkey = nkeys::XKey::new();
    let sealed_wrong =
        attacker_xkey.seal(request_token(&server_key, |_| {}).as_bytes(), &stranger_xkey).unwrap();

    let mut hostile: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("garbage", b"hello".to_vec(), None),
        ("empty", Vec::new(), None),
        ("huge", vec![b'x'; 200 * 1024], None),
        ("not utf-8", vec![0xff, 0xfe, 0x00, 0x80], None),
        ("two parts", b"eyJ0eXAiOiJKV1QifQ.e30".to_vec(), None),
        ("signed by an account key", request_token(&account_key, |_| {}).into_bytes(), None),
        ("flipped signature", flip(request_token(&server_key, |_| {})).into_bytes(), None),
        ("expired", request_token(&server_key, |c| c.expires = Some(now - 60)).into_bytes(), None),
        (
            "not yet valid",
            request_token(&server_key, |c| c.not_before = Some(now + 600)).into_bytes(),
            None,
        ),
        (
            "wrong audience",
            request_token(&server_key, |c| c.audience = Some("someone-else".into())).into_bytes(),
            None,
        ),
        ("no audience", request_token(&server_key, |c| c.audience = None).into_bytes(), None),
        (
            "wrong type",
            request_token(&server_key, |c| c.nats.generic.kind = "authorization_response".into())
                .into_bytes(),
            None,
        ),
        (
            "version 1",
            request_token(&server_key, |c| c.nats.generic.version = 1).into_bytes(),
            None,
        ),
        ("sealed with the wrong key", sealed_wrong, Some(attacker_xkey.public_key())),
        (
            "claims a seal but is plain",
            request_token(&server_key, |_| {}).into_bytes(),
            Some(stranger_xkey.public_key()),
        ),
        (
            "bad xkey header",
            request_token(&server_key, |_| {}).into_bytes(),
            Some("not-a-key".into()),
        ),
        (
            "wrong password",
            request_token(&server_key, |c| c.nats.connect_options.password = "guess".into())
                .into_bytes(),
            None,
        ),
        (
            "no credentials",
            request_token(&server_key, |c| {
                c.nats.connect_options.username.clear();
                c.nats.connect_options.password.clear();
            })
            .into_bytes(),
            None,
        ),
        (
            "path-like login",
            request_token(&server_key, |c| c.nats.connect_options.username = "../../dev1".into())
                .into_bytes(),
            None,
        ),
        (
            "odd login",
            request_token(&server_key, |c| {
                c.nats.connect_options.username = "dev1@acme@acme".into()
            })
            .into_bytes(),
            None,
        ),
        (
            "malformed token",
            request_token(&server_key, |c| {
                c.nats.connect_options.username.clear();
                c.nats.connect_options.password.clear();
                c.nats.connect_options.token = "authd_x_".into();
            })
            .into_bytes(),
            None,
        ),
        (
            "user key not a user",
            request_token(&server_key, |c| c.nats.user_nkey = "not-a-key".into()).into_bytes(),
            None,
        ),
    ];
    hostile.push((
        "long password",
        request_token(&server_key, |c| c.nats.connect_options.password = "p".repeat(30_000))
            .into_bytes(),
        None,
    ));
    assert!(hostile.len() >= 20);

    for (what, payload, xkey_header) in hostile {
        let inbox = service.new_inbox();
        let mut replies = service.subscribe(inbox.clone()).await.unwrap();
        let mut headers = async_nats::HeaderMap::new();
        if let Some(key) = &xkey_header {
            headers.insert("Nats-Server-Xkey", key.as_str());
        }
        service
            .publish_with_reply_and_headers("$SYS.REQ.USER.AUTH", inbox, headers, payload.into())
            .await
            .unwrap();
        service.flush().await.unwrap();
        if let Ok(Some(reply)) =
            tokio::time::timeout(Duration::from_millis(250), replies.next()).await
        {
            // Any answer must be a refusal; unsealed, since nothing valid was sealed to us.
            let text = String::from_utf8(reply.payload.to_vec()).unwrap_or_default();
            let parts: Vec<&str> = text.split('.').collect();
            assert_eq!(parts.len(), 3, "{what}: unexpected reply");
            let body = data_encoding::BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap();
            let claims: Value = serde_json::from_slice(&body).unwrap();
            assert!(claims["nats"]["jwt"].is_null(), "{what}: authorized someone: {claims}");
            assert!(claims["nats"]["error"].is_string(), "{what}: {claims}");
        }
    }
    // Still alive and still letting the right people in.
    s.admin.call("status", &json!({})).await.unwrap();
    s.stack.login(password("dev1", DEV1_PASSWORD)).await.unwrap();
}

/// The early subscription ([`nats_authd::callout::early`]) receives authorization requests on
/// its own connection, headers and reply subject intact, and is back by itself after the
/// server restarts, with nothing from the async-nats client but the server's address.
#[tokio::test]
async fn the_early_subscription_receives_requests_and_is_back_after_a_restart() {
    use nats_authd::callout::backlog::Waiting;
    use nats_authd::callout::{early, CalloutStats, AUTH_SUBJECT};
    use nats_authd::connection::{self, ConnectionSettings};
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let mut stack = Stack::init().await;
    stack.start_server().await;
    // The service's connection without the service (nobody else subscribes to the callout).
    let settings = ConnectionSettings { urls: vec![stack.url()], ..stack.connection_settings() };
    let connection =
        connection::connect(stack.authority(), &settings, std::future::pending()).await.unwrap();
    let dialer = connection.dialer().expect("no TLS: a dialer");
    let waiting = Arc::new(Waiting::new(16));
    let stop = CancellationToken::new();
    let task = tokio::spawn(early::run(
        dialer,
        Arc::clone(&waiting),
        Arc::new(CalloutStats::default()),
        stop.clone(),
    ));

    let msg = early_request(&stack, &waiting).await;
    assert_eq!(msg.subject.as_str(), AUTH_SUBJECT);
    assert!(msg.reply.as_deref().is_some_and(|r| !r.is_empty()), "{msg:?}");
    assert!(msg.payload.len() > 100, "a sealed request: {msg:?}");
    let xkey = msg.headers.as_ref().and_then(|h| h.get("Nats-Server-Xkey"));
    assert!(xkey.is_some_and(|v| v.as_str().starts_with('X')), "{msg:?}");

    stack.server.take().unwrap().kill().await;
    stack.start_server().await;
    let msg = early_request(&stack, &waiting).await;
    assert_eq!(msg.subject.as_str(), AUTH_SUBJECT);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the early subscription stops when told")
        .unwrap();
    connection.close().await;
}

/// A client's login makes the server send an authorization request; with no service running,
/// only the early subscription can receive it (the client is refused later, and dropped).
async fn early_request(
    stack: &Stack,
    waiting: &nats_authd::callout::backlog::Waiting<(async_nats::Message, tokio::time::Instant)>,
) -> async_nats::Message {
    for _ in 0..20 {
        let login = stack.login(password("dev1", "pw"));
        tokio::select! {
            _ = login => {}
            got = waiting.next() => return got.expect("open").0,
            () = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
    panic!("the early subscription received no request");
}
