//! One connection that survives: bootstrap, failover to a backup, failback, clean shutdown.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::ConnectOptions;
use common::{account_name, eventually, tenant, user_name, Stack};
use nats_authd::api::account::CreateAccount;
use nats_authd::api::ops::GetStatus;
use nats_authd::api::user::{GetCreds, UserRef};
use nats_authd::bootstrap::{self, MasterKeyOptions};
use nats_authd::client::AdminClient;
use nats_authd::connection::ConnectionSettings;
use nats_authd::model::AccountRecord;
use nats_authd::publisher::PublisherSettings;
use nats_authd::service::Status;

async fn status(admin: &AdminClient) -> Option<Status> {
    admin.send(&GetStatus {}).await.ok()
}

#[tokio::test]
async fn starts_without_a_server_and_pushes_once_one_appears() {
    let mut stack = Stack::init().await;
    let settings = stack.connection_settings();
    let ceiling = settings.max_backoff;
    let _service = stack.serve_on(settings, PublisherSettings::default());
    // A change through the store while no server exists.
    let view = stack
        .manager()
        .create_account(CreateAccount::new(account_name("early")), nats_authd::model::now())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    stack.start_server().await;
    let admin = stack.admin().await;
    let connected_after = started.elapsed();
    assert!(
        connected_after < ceiling + Duration::from_secs(3),
        "connected after {connected_after:?}"
    );
    let service = stack.service_client().await;
    common::await_held(&service, &view.public_key, true, Duration::from_secs(10)).await;
    let s = status(&admin).await.unwrap();
    assert_eq!(s.state, "connected");
    assert_eq!(s.server_url.as_deref(), Some(stack.url().as_str()));
}

#[tokio::test]
async fn fails_over_to_the_backup_and_back_to_the_primary() {
    let mut stack = Stack::start().await;
    let backup = stack.start_backup().await;
    let failback_interval = Duration::from_secs(1);
    let settings = ConnectionSettings {
        urls: vec![stack.url(), backup.url()],
        primary_retries: 2,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        failback_interval,
        connect_timeout: Duration::from_secs(1),
        ..ConnectionSettings::default()
    };
    let _service = stack.serve_on(settings, PublisherSettings::default());
    let admin = stack.admin().await;
    let acme = tenant(&admin, "acme").await;
    acme.open_role("all").await;
    acme.user("u", "all", Some("u-password")).await;
    let s = status(&admin).await.unwrap();
    assert_eq!((s.state.as_str(), s.server_url.clone()), ("connected", Some(stack.url())));

    // Kill the primary: within 5 s the service answers on the backup.
    let killed = Instant::now();
    stack.server.take().unwrap().kill().await;
    let on_backup = stack.admin_at(&backup.url()).await;
    eventually(Duration::from_secs(5), "the service to be on the backup", || async {
        status(&on_backup)
            .await
            .is_some_and(|s| s.state == "failed_over" && s.server_url == Some(backup.url()))
    })
    .await;
    let moved_after = killed.elapsed();
    assert!(moved_after < Duration::from_secs(5), "failover took {moved_after:?}");
    let s = status(&on_backup).await.unwrap();
    assert!(s.last_failover_at.is_some());

    // The backup learns the accounts on connect (reconcile), so acme's users work there.
    // The backup learns the accounts when the service reconciles on connecting to it.
    eventually(Duration::from_secs(10), "the backup to hold acme", || async {
        status(&on_backup).await.is_some_and(|s| s.reconciliations >= 2 && s.queue_depth == 0)
    })
    .await;
    let u = UserRef::new(account_name("acme"), user_name("u"));
    let creds = on_backup.send(&GetCreds(u)).await.unwrap().creds;
    let user = async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(backup.url())
        .await
        .expect("an acme user connects to the backup");
    user.flush().await.unwrap();
    // And the callout answers there: a password login on the backup.
    let login = ConnectOptions::with_user_and_password("u".into(), "u-password".into());
    stack.login_at(&backup.url(), login).await.expect("a callout login on the backup");

    // The primary comes back: within one failback interval (plus a probe) the service is home.
    stack.start_server().await;
    let back = Instant::now();
    eventually(failback_interval + Duration::from_secs(3), "the service to fail back", || async {
        stack_admin_status(&stack)
            .await
            .is_some_and(|s| s.state == "connected" && s.server_url == Some(stack.url()))
    })
    .await;
    // One failback interval, plus the time to probe, reconnect and answer.
    let home_after = back.elapsed();
    assert!(
        home_after < failback_interval + Duration::from_secs(2),
        "failback took {home_after:?}"
    );
    let s = stack_admin_status(&stack).await.unwrap();
    assert!(s.last_failback_at.is_some());
    assert!(s.reconnects >= 2, "{}", s.reconnects);
}

async fn stack_admin_status(stack: &Stack) -> Option<Status> {
    let creds = std::fs::read_to_string(stack.layout.admin_creds()).unwrap();
    let client = async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(stack.url())
        .await
        .ok()?;
    status(&AdminClient::new(client, "authd", Duration::from_secs(2))).await
}

#[tokio::test]
async fn sigterm_during_a_burst_keeps_every_acknowledged_change() {
    let mut stack = Stack::start().await;
    stack.release_store();
    let log = stack.dir.path().join("serve.log");
    let mut service = Command::new(env!("CARGO_BIN_EXE_nats-authd"))
        .args(["--log", "info", "serve", "--data-dir"])
        .arg(&stack.layout.data_dir)
        .args(["--nats-url", &stack.url()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let creds = std::fs::read_to_string(stack.layout.admin_creds()).unwrap();
    let client = async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(stack.url())
        .await
        .unwrap();
    let admin = AdminClient::new(client, "authd", Duration::from_secs(3));
    eventually(Duration::from_secs(15), "the service to answer", || async {
        status(&admin).await.is_some()
    })
    .await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (admin, acked) = (admin.clone(), Arc::clone(&acked));
        workers.push(tokio::spawn(async move {
            for i in 0..500 {
                let name = account_name(&format!("burst-{worker}-{i}"));
                match admin.send(&CreateAccount::new(name.clone())).await {
                    Ok(_) => acked.lock().unwrap().push(name.to_string()),
                    Err(_) => return,
                }
            }
        }));
    }
    eventually(Duration::from_secs(30), "some changes to be acknowledged", || async {
        acked.lock().unwrap().len() >= 40
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || service.wait().unwrap()).await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status}: {log_text}");
    assert!(!log_text.contains("panicked") && !log_text.contains("cancelled"), "{log_text}");

    let acked = acked.lock().unwrap().clone();
    let authority =
        bootstrap::open(&stack.layout.data_dir, &MasterKeyOptions::default()).await.unwrap();
    let stored: Vec<String> = authority
        .db()
        .list::<AccountRecord>("")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name.to_string())
        .collect();
    for name in &acked {
        assert!(stored.contains(name), "acknowledged {name} is not in the store");
    }
}
