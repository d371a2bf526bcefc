//! Login storms: 500 first-time password logins at once, then the same 500 reconnecting after
//! a server restart. Prints its measurements (run with --nocapture to see them).
//!
//! It takes a minute or more of both cores (500 argon2 hashes, then 500 logins twice), so it
//! is behind the `slow-tests` feature and the default `cargo test` skips it:
//!
//! ```sh
//! cargo test --features slow-tests --test callout_storm -- --nocapture
//! ```

#![cfg(feature = "slow-tests")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{ConnectErrorKind, ConnectOptions};
use common::{account_name, allow, eventually, role_name, user_name, Stack};
use nats_authd::api::account::CreateAccount;
use nats_authd::api::ops::GetStatus;
use nats_authd::api::role::CreateRole;
use nats_authd::api::user::{CreateUser, Password};
use nats_authd::callout::CalloutCounts;
use nats_authd::client::AdminClient;
use nats_authd::service::Status;

const USERS: usize = 500;
const CALLOUT_TIMEOUT: Duration = Duration::from_secs(2);

fn pw(i: usize) -> String {
    format!("password-of-user-{i}")
}

async fn status(admin: &AdminClient) -> Status {
    admin.send(&GetStatus {}).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_logins_then_a_reconnect_storm() {
    let mut stack = Stack::init().await;
    stack.start_server().await;
    {
        let manager = stack.manager();
        let now = nats_authd::model::now();
        manager.create_account(CreateAccount::new(account_name("acme")), now).await.unwrap();
        let dev = CreateRole {
            subscribe: allow(&["_INBOX.>"]),
            ..CreateRole::new(account_name("acme"), role_name("dev"))
        };
        manager.create_role(dev, now).await.unwrap();
        let creating = (0..USERS).map(|i| {
            let user = CreateUser {
                role: Some("dev".into()),
                password: Some(Password::new(pw(i))),
                ..CreateUser::new(account_name("acme"), user_name(&format!("u{i}")))
            };
            let manager = manager.clone();
            async move { manager.create_user(user, now).await.unwrap() }
        });
        futures::future::join_all(creating).await;
    }
    let _service = stack.serve();
    let admin = stack.admin().await;
    eventually(Duration::from_secs(20), "acme to be pushed", || async {
        status(&admin).await.queue_depth == 0
    })
    .await;
    let sentinel = Arc::new(std::fs::read_to_string(stack.layout.sentinel_creds()).unwrap());
    let url = stack.url();
    let reconnected = Arc::new(AtomicUsize::new(0));

    // 500 first-time logins at once: argon2 for each, two cores.
    let started = Instant::now();
    let logins: Vec<_> = (0..USERS)
        .map(|i| {
            let (sentinel, url, reconnected) = (sentinel.clone(), url.clone(), reconnected.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let result = ConnectOptions::with_user_and_password(format!("u{i}"), pw(i))
                    .credentials(&sentinel)
                    .unwrap()
                    .reconnect_delay_callback(|_| Duration::from_millis(50))
                    .event_callback(move |event| {
                        let reconnected = reconnected.clone();
                        async move {
                            if matches!(event, async_nats::Event::Connected) {
                                reconnected.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                    .connect(url)
                    .await;
                (i, result, t.elapsed())
            })
        })
        .collect();
    // The management API keeps answering meanwhile.
    let mut slowest_status = Duration::ZERO;
    while !logins.iter().all(|l| l.is_finished()) {
        let t = Instant::now();
        status(&admin).await;
        slowest_status = slowest_status.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut clients = Vec::new();
    let mut retry = Vec::new();
    let mut slowest = Duration::ZERO;
    for login in logins {
        let (i, result, took) = login.await.unwrap();
        slowest = slowest.max(took);
        match result {
            Ok(client) => clients.push(client),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ConnectErrorKind::AuthorizationViolation,
                    "login {i} failed uncleanly: {e}"
                );
                retry.push(i);
            }
        }
    }
    println!(
        "first-time storm: {} of {USERS} in {:?}, {} refused cleanly (expired in the queue), slowest {:?}, slowest status {:?}",
        clients.len(),
        started.elapsed(),
        retry.len(),
        slowest,
        slowest_status
    );
    assert!(slowest < CALLOUT_TIMEOUT + Duration::from_secs(1), "a login hung for {slowest:?}");
    assert!(
        slowest_status < Duration::from_secs(1),
        "status took {slowest_status:?} during the storm"
    );
    assert!(!clients.is_empty());

    // The rest log in at a calmer pace, so that every user has logged in once.
    for i in retry {
        let client = loop {
            let attempt = ConnectOptions::with_user_and_password(format!("u{i}"), pw(i))
                .credentials(&sentinel)
                .unwrap()
                .reconnect_delay_callback(|_| Duration::from_millis(50))
                .event_callback({
                    let reconnected = reconnected.clone();
                    move |event| {
                        let reconnected = reconnected.clone();
                        async move {
                            if matches!(event, async_nats::Event::Connected) {
                                reconnected.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
                .connect(stack.url())
                .await;
            if let Ok(client) = attempt {
                break client;
            }
        };
        clients.push(client);
    }
    assert_eq!(clients.len(), USERS);

    // Restart the server: all 500 reconnect at once, through the callout, from the cache.
    let counts_before = status(&admin).await.callout;
    let before = reconnected.load(Ordering::SeqCst);
    stack.server.take().unwrap().stop(Duration::from_secs(5)).await;
    stack.start_server().await;
    let back = Instant::now();
    let admin = stack.admin().await;
    let service_back = back.elapsed();
    let mut events = admin.nats().subscribe("authd.events.auth.>").await.unwrap();
    eventually(Duration::from_secs(30), "all clients to reconnect", || async {
        reconnected.load(Ordering::SeqCst) - before >= USERS
    })
    .await;
    let storm = back.elapsed();
    let mut latencies = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut events))
            .await
    {
        let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
        latencies.push(event["latency_ms"].as_f64().unwrap());
    }
    latencies.sort_by(f64::total_cmp);
    // The client counter can run ahead of the service's (a refused reconnect attempt may
    // still report a connection): wait for the service to have admitted them all.
    eventually(Duration::from_secs(10), "the service to count every reconnect", || async {
        status(&admin).await.callout.allowed - counts_before.allowed >= USERS as u64
    })
    .await;
    let counts = status(&admin).await.callout;
    let delta = |count: fn(&CalloutCounts) -> u64| count(&counts) - count(&counts_before);
    println!(
        "reconnect storm: service back {service_back:?} and all {USERS} clients back {storm:?} after the server restarted; \
         {} allowed, {} answered from the cache, {} refused ({} rate limited), {} dropped, service-side latency p50 {:.1} ms max {:.1} ms over {} events",
        delta(|c| c.allowed),
        delta(|c| c.cache_hits),
        delta(|c| c.refused),
        delta(|c| c.rate_limited),
        delta(|c| c.dropped),
        latencies.get(latencies.len() / 2).copied().unwrap_or_default(),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );
    assert!(delta(|c| c.cache_hits) >= USERS as u64, "{counts:?}");
    assert_eq!(delta(|c| c.dropped), 0, "requests expired in the queue during the reconnect storm");
    let slowest = latencies.last().copied().unwrap_or_default();
    assert!(
        slowest < CALLOUT_TIMEOUT.as_secs_f64() * 1000.0,
        "a reconnect took {slowest} ms to answer"
    );
}
