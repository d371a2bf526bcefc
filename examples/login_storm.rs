//! Benchmark: login storms through the callout on a throw-away local stack.
//!
//! Makes a temp data dir, starts nats-server on free loopback ports, runs nats-authd in this
//! process, creates N password users, then measures (1) N simultaneous first-time logins
//! (argon2 for each) and (2) the same N clients reconnecting at once after a server restart
//! (answered from the verified-password cache). Prints the numbers; asserts nothing.
//!
//! ```sh
//! scripts/ensure-nats-server            # once; or set NATS_SERVER_BIN
//! cargo run --release --example login_storm -- 500
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::ConnectOptions;
use nats_authd::api::account::CreateAccount;
use nats_authd::api::role::{CreateRole, PermissionInput};
use nats_authd::api::user::{CreateUser, Password};
use nats_authd::app;
use nats_authd::bootstrap::{self, InitOptions, Layout, MasterKeyOptions};
use nats_authd::connection::ConnectionSettings;
use nats_authd::manage::Manager;
use nats_authd::model::{self, AccountName, RoleName, UserName};
use nats_authd::nats_server::{self, NatsServer};
use nats_authd::password::PasswordHasher;
use nats_authd::server_config::ServerSettings;
use tokio_util::sync::CancellationToken;

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn nats_server_bin() -> Result<std::path::PathBuf> {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools");
    Ok(nats_server::find_in_tools(&tools)?)
}

async fn start_server(
    bin: &std::path::Path,
    layout: &Layout,
    settings: &ServerSettings,
    dir: &std::path::Path,
) -> Result<NatsServer> {
    Ok(NatsServer::start(
        bin,
        &layout.config_file(),
        &dir.join("nats.log"),
        &settings.listen_addr(),
        &[],
        Duration::from_secs(15),
    )
    .await?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<()> {
    let users: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let layout = Layout { data_dir: dir.path().join("data"), out_dir: dir.path().join("out") };
    let settings = ServerSettings {
        host: "127.0.0.1".into(),
        port: free_port()?,
        http_port: free_port()?,
        server_name: "storm".into(),
    };
    let options = InitOptions {
        layout: layout.clone(),
        master_key: MasterKeyOptions::default(),
        server: settings.clone(),
        operator_name: "storm".into(),
        xkey: true,
    };
    let authority = bootstrap::init(&options, model::now()).await?.authority;
    let bin = nats_server_bin()?;
    let mut server = Some(start_server(&bin, &layout, &settings, dir.path()).await?);

    let manager = Manager::new(authority.clone(), PasswordHasher::default());
    let now = model::now();
    let acme = AccountName::new("acme")?;
    manager.create_account(CreateAccount::new(acme.clone()), now).await?;
    let role = CreateRole {
        subscribe: PermissionInput::lists(&["_INBOX.>"], &[]),
        ..CreateRole::new(acme.clone(), RoleName::new("r")?)
    };
    manager.create_role(role, now).await?;
    let started = Instant::now();
    let mut requests = Vec::with_capacity(users);
    for i in 0..users {
        requests.push(CreateUser {
            role: Some("r".into()),
            password: Some(Password::new(format!("password-{i}"))),
            ..CreateUser::new(acme.clone(), UserName::new(&format!("u{i}"))?)
        });
    }
    let creating = requests.into_iter().map(|user| {
        let manager = manager.clone();
        async move { manager.create_user(user, now).await }
    });
    for created in futures::future::join_all(creating).await {
        created?;
    }
    println!("created {users} password users in {:?} (argon2id, one per core)", started.elapsed());

    let stop = CancellationToken::new();
    let connection = ConnectionSettings {
        urls: vec![settings.client_url()],
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..ConnectionSettings::default()
    };
    let service = tokio::spawn(app::run(
        authority.clone(),
        app::Settings { connection, ..app::Settings::default() },
        stop.clone().cancelled_owned(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sentinel = Arc::new(std::fs::read_to_string(layout.sentinel_creds())?);
    let connected = Arc::new(AtomicUsize::new(0));
    let url = settings.client_url();
    let login = |i: usize| {
        let (sentinel, connected, url) = (sentinel.clone(), connected.clone(), url.clone());
        async move {
            let t = Instant::now();
            let result =
                ConnectOptions::with_user_and_password(format!("u{i}"), format!("password-{i}"))
                    .credentials(&sentinel)
                    .expect("sentinel creds")
                    .reconnect_delay_callback(|_| Duration::from_millis(50))
                    .event_callback(move |event| {
                        let connected = connected.clone();
                        async move {
                            if matches!(event, async_nats::Event::Connected) {
                                connected.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                    .connect(url)
                    .await;
            (i, result, t.elapsed())
        }
    };

    let t = Instant::now();
    let handles: Vec<_> = (0..users).map(|i| tokio::spawn(login(i))).collect();
    let mut clients = Vec::new();
    let mut refused = Vec::new();
    let mut times = Vec::new();
    for h in handles {
        let (i, result, took) = h.await?;
        times.push(took);
        match result {
            Ok(c) => clients.push(c),
            Err(_) => refused.push(i),
        }
    }
    times.sort();
    println!(
        "first-time storm: {} of {users} logged in, {} refused (expired waiting for argon2), wall {:?}, p50 {:?} p99 {:?} max {:?}",
        clients.len(),
        refused.len(),
        t.elapsed(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or_default()
    );
    for i in refused {
        loop {
            if let (_, Ok(c), _) = login(i).await {
                clients.push(c);
                break;
            }
        }
    }

    let before = connected.load(Ordering::SeqCst);
    server.take().context("server")?.stop(Duration::from_secs(5)).await;
    server = Some(start_server(&bin, &layout, &settings, dir.path()).await?);
    let t = Instant::now();
    while connected.load(Ordering::SeqCst) - before < users {
        if t.elapsed() > Duration::from_secs(60) {
            anyhow::bail!(
                "only {} of {users} reconnected",
                connected.load(Ordering::SeqCst) - before
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "reconnect storm: all {users} clients back {:?} after the server restarted",
        t.elapsed()
    );

    stop.cancel();
    service.await??;
    if let Some(server) = server {
        server.stop(Duration::from_secs(5)).await;
    }
    drop(clients);
    Ok(())
}
