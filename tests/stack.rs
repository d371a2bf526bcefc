//! The generated trust chain against a real nats-server 2.15: config check, who lands where,
//! and a library-minted tenant user holding exactly its permissions.

mod common;

use std::time::Duration;

use common::{account_of, nats_server_bin, Denied, Stack};
use futures::StreamExt;
use nats_authd::claims::{Permission, Permissions, UserPermissionLimits};
use nats_authd::model::{
    self, AccountKind, AccountName, AccountRecord, UserKind, UserName, UserRecord,
};
use nats_authd::names::{ADMIN_ACCOUNT, AUTH_ACCOUNT};
use nats_authd::nats_server;
use nats_authd::trust;

#[tokio::test]
async fn nats_server_accepts_the_generated_config() {
    let stack = Stack::init().await;
    nats_server::check_config(&nats_server_bin(), &stack.layout.config_file()).await.unwrap();
}

#[tokio::test]
async fn init_run_again_keeps_the_operators_local_settings_byte_for_byte() {
    let mut stack = Stack::init().await;
    let local = stack.layout.local_config_file();
    assert!(local.exists(), "init creates local.conf");
    let mine = "# mine\nmax_connections: 123\njetstream { store_dir: \"JS\" }\n";
    let mine = mine.replace("JS", &stack.dir.path().join("js").display().to_string());
    std::fs::write(&local, &mine).unwrap();
    for _ in 0..2 {
        stack.reinit().await.unwrap();
        assert_eq!(std::fs::read_to_string(&local).unwrap(), mine);
    }
    nats_server::check_config(&nats_server_bin(), &stack.layout.config_file()).await.unwrap();
    // And the server really reads it.
    stack.start_server().await;
    let varz = varz(stack.settings.http_port).await;
    assert_eq!(varz["max_connections"], 123, "{varz}");
}

/// The server's `/varz`, read over plain HTTP/1.0 on loopback (no HTTP client crate needed).
async fn varz(port: u16) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET /varz HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn every_local_snippet_passes_the_servers_config_check() {
    let stack = Stack::init().await;
    let tmp = stack.dir.path();
    // The TLS snippet names certificate files (ca.pem, server.pem, server-key.pem, as the
    // private CA of tests/common/certs.rs names them): make real ones for the check.
    let certs = tmp.join("etc");
    let have_openssl = common::certs::have_openssl();
    if have_openssl {
        common::certs::make(&certs);
    }
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats-config");
    // The snippets, and each server's local.conf of the production cluster.
    let mut files: Vec<_> = ["local", "cluster"]
        .iter()
        .flat_map(|d| std::fs::read_dir(config.join(d)).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let mut checked = 0;
    for path in files {
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        if path.file_name().unwrap() == "tls.conf" && !have_openssl {
            println!("skipping tls.conf: no openssl to make a certificate");
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace("/var/lib/nats", &tmp.join("var").display().to_string())
            .replace("/etc/nats", &certs.display().to_string());
        std::fs::write(stack.layout.local_config_file(), text).unwrap();
        nats_server::check_config(&nats_server_bin(), &stack.layout.config_file())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} snippets checked");
}

#[tokio::test]
async fn admin_creds_land_in_admin_and_the_service_in_auth() {
    let stack = Stack::start().await;
    let admin = stack.authority().account(&AccountName::new(ADMIN_ACCOUNT).unwrap()).await.unwrap();
    let auth = stack.authority().account(&AccountName::new(AUTH_ACCOUNT).unwrap()).await.unwrap();

    let creds = std::fs::read_to_string(stack.layout.admin_creds()).unwrap();
    let (client, _) = stack.connect_creds(&creds).await;
    assert_eq!(account_of(&client).await, admin.public_key());

    let service = stack.service_client().await;
    assert_eq!(account_of(&service).await, auth.public_key());
}

#[tokio::test]
async fn sentinel_alone_is_not_let_in() {
    // Every AUTH user but the service goes through the callout; with no callout answering,
    // the sentinel's creds must not be a way in.
    let stack = Stack::start().await;
    let creds = std::fs::read_to_string(stack.layout.sentinel_creds()).unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::with_credentials(&creds).unwrap().connect(stack.url()),
    )
    .await
    .expect("connect must fail, not hang");
    let err = result.expect_err("sentinel connected without a callout answer");
    assert_eq!(err.kind(), async_nats::ConnectErrorKind::AuthorizationViolation, "{err}");
}

#[tokio::test]
async fn library_minted_tenant_user_has_exactly_its_permissions() {
    let stack = Stack::start().await;
    let authority = stack.authority();
    let master = authority.master();
    let now = model::now();
    let operator = authority.operator().await.unwrap();

    // A tenant account, pushed the way the service will push it: over its own connection,
    // through AUTH's import of $SYS.REQ.CLAIMS.UPDATE.
    let acme =
        AccountRecord::new(AccountName::new("acme").unwrap(), AccountKind::Tenant, master, now);
    let account_jwt = trust::account_jwt(&operator, &acme, None, master, now).unwrap();
    trust::verify_account_jwt(&operator, &account_jwt, now).unwrap();
    let service = stack.service_client().await;
    let reply =
        service.request("$SYS.REQ.CLAIMS.UPDATE", account_jwt.clone().into()).await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["data"]["code"], 200, "{reply}");
    assert_eq!(
        common::held_jwt(&service, acme.public_key()).await.as_deref(),
        Some(account_jwt.as_str())
    );

    let user = UserRecord::new(
        acme.name.clone(),
        UserName::new("dev1").unwrap(),
        UserKind::Member,
        master,
        now,
    );
    let permissions = UserPermissionLimits {
        permissions: Permissions {
            // USER.INFO only so the test can ask the server which account it is in.
            publish: Permission {
                allow: vec!["orders.>".into(), "$SYS.REQ.USER.INFO".into()],
                deny: vec![],
            },
            subscribe: Permission {
                allow: vec!["orders.>".into(), "_INBOX.>".into()],
                deny: vec![],
            },
            response: None,
        },
        ..UserPermissionLimits::default()
    };
    let creds = trust::user_creds(&acme, &user, permissions, master, now).unwrap();
    let (client, mut violations) = stack.connect_creds(&creds).await;
    assert_eq!(account_of(&client).await, acme.public_key());

    // Allowed: delivered.
    let mut sub = client.subscribe("orders.>").await.unwrap();
    client.flush().await.unwrap();
    client.publish("orders.new", "42".into()).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(msg.payload.as_ref(), b"42");

    // Outside: a permissions violation, and nothing delivered.
    client.publish("secret.plans", "x".into()).await.unwrap();
    client.flush().await.unwrap();
    common::denied(&mut violations, Denied::Publish("secret.plans".into())).await;

    let _denied_sub = client.subscribe("secret.>").await.unwrap();
    client.flush().await.unwrap();
    common::denied(&mut violations, Denied::Subscribe("secret.>".into())).await;
}

#[tokio::test]
async fn tenant_accounts_do_not_share_subjects() {
    let stack = Stack::start().await;
    let authority = stack.authority();
    let (master, now) = (authority.master(), model::now());
    let operator = authority.operator().await.unwrap();
    let service = stack.service_client().await;

    let mut clients = Vec::new();
    for name in ["acme", "globex"] {
        let account =
            AccountRecord::new(AccountName::new(name).unwrap(), AccountKind::Tenant, master, now);
        let jwt = trust::account_jwt(&operator, &account, None, master, now).unwrap();
        service.request("$SYS.REQ.CLAIMS.UPDATE", jwt.into()).await.unwrap();
        let user = UserRecord::new(
            account.name.clone(),
            UserName::new("u").unwrap(),
            UserKind::Member,
            master,
            now,
        );
        let creds =
            trust::user_creds(&account, &user, UserPermissionLimits::default(), master, now)
                .unwrap();
        clients.push(stack.connect_creds(&creds).await.0);
    }
    let mut globex_sub = clients[1].subscribe("orders.>").await.unwrap();
    let mut acme_sub = clients[0].subscribe("orders.>").await.unwrap();
    clients[1].flush().await.unwrap();
    clients[0].flush().await.unwrap();
    clients[0].publish("orders.new", "acme".into()).await.unwrap();
    clients[0].flush().await.unwrap();
    let own = tokio::time::timeout(Duration::from_secs(5), acme_sub.next()).await.unwrap().unwrap();
    assert_eq!(own.payload.as_ref(), b"acme");
    let leaked = tokio::time::timeout(Duration::from_millis(300), globex_sub.next()).await;
    assert!(leaked.is_err(), "globex saw acme's message");
}

#[tokio::test]
async fn claims_delete_makes_the_server_forget_an_account() {
    let stack = Stack::start().await;
    let authority = stack.authority();
    let (master, now) = (authority.master(), model::now());
    let operator = authority.operator().await.unwrap();
    let service = stack.service_client().await;

    let acme =
        AccountRecord::new(AccountName::new("acme").unwrap(), AccountKind::Tenant, master, now);
    let jwt = trust::account_jwt(&operator, &acme, None, master, now).unwrap();
    service.request("$SYS.REQ.CLAIMS.UPDATE", jwt.into()).await.unwrap();

    let delete =
        trust::delete_accounts_jwt(&operator, vec![acme.public_key().to_string()], master, now)
            .unwrap();
    let reply = service.request("$SYS.REQ.CLAIMS.DELETE", delete.into()).await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["data"]["code"], 200, "{reply}");
    assert_eq!(
        common::held_jwt(&service, acme.public_key()).await,
        None,
        "server still holds the deleted account"
    );
}

#[tokio::test]
async fn a_busy_port_is_reported_not_mistaken_for_our_server() {
    let stack = Stack::start().await;
    let log = stack.dir.path().join("second.log");
    let result = nats_server::NatsServer::start(
        &nats_server_bin(),
        &stack.layout.config_file(),
        &log,
        &stack.addr(),
        &[],
        Duration::from_secs(5),
    )
    .await;
    let err = result.expect_err("a second server on a busy port must not start");
    assert!(matches!(err, nats_server::NatsServerError::AddressInUse { .. }), "{err}");
}

#[tokio::test]
async fn a_server_that_dies_is_noticed() {
    let mut stack = Stack::start().await;
    let server = stack.server.take().unwrap();
    let exited = server.exited();
    let pid = nix::unistd::Pid::from_raw(server.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(10), exited).await.expect("death not noticed");
    assert!(status.contains("signal"), "{status}");
    assert!(
        server.stop(Duration::from_secs(1)).await.is_some(),
        "stop reports that it died on its own"
    );
}
