//! Several nats-authd instances on one JetStream store, in a 3-server cluster: a change
//! acknowledged by one instance survives its crash and reaches every server; callout logins
//! go on through the other instance when one is killed; a login admitted by one instance is
//! kicked when the other disables its user; wrong passwords spread over both instances are
//! limited as if one saw them; pushes queued when the pushing instance dies are pushed by the
//! other.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};
use cluster::Cluster;
use common::{eventually, held_jwt};
use nats_authd::api::ops::GetStatus;
use nats_authd::client::AdminClient;
use serde_json::json;
use tokio::sync::mpsc;

const PASSWORD: &str = "correct horse battery";

/// acme with role `r` (replies only) and users dev1..=dev`users` with [`PASSWORD`], known to
/// every server; returns acme's public key.
async fn tenant(cluster: &Cluster, admin: &AdminClient, users: usize) -> String {
    let account = admin.call("account.create", &json!({ "name": "acme" })).await.unwrap();
    let subscribe = json!({ "allow": ["_INBOX.>"] });
    let role = json!({ "account": "acme", "name": "r", "subscribe": subscribe });
    admin.call("role.create", &role).await.unwrap();
    for i in 1..=users {
        let name = format!("dev{i}");
        let user = json!({ "account": "acme", "name": name, "role": "r", "password": PASSWORD });
        admin.call("user.create", &user).await.unwrap();
    }
    let key = account["public_key"].as_str().unwrap().to_string();
    held_everywhere(cluster, &key).await;
    key
}

/// Waits until every server of the cluster has stored account `key` in its resolver dir.
async fn held_everywhere(cluster: &Cluster, key: &str) {
    for (i, node) in cluster.nodes.iter().enumerate() {
        let file = node.resolver_dir().join(format!("{key}.jwt"));
        eventually(Duration::from_secs(20), &format!("server {i} to store {key}"), || async {
            file.exists()
        })
        .await;
    }
}

/// A user/password login (no creds: the server's default sentinel) on server `node`, with
/// its connection events.
async fn login(
    cluster: &Cluster,
    node: usize,
    user: &str,
    password: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<Event>), async_nats::ConnectError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ConnectOptions::with_user_and_password(user.into(), password.into())
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        })
        .connect(cluster.nodes[node].url())
        .await?;
    Ok((client, rx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_acknowledged_by_one_instance_survives_its_crash_and_reaches_every_server() {
    let cluster = Cluster::start().await;
    // The servers spread API requests over the instances at random: A alone acknowledges.
    let mut a = cluster.instance("a", 0);
    let through_a = cluster.admin(0).await;
    let account = through_a.call("account.create", &json!({ "name": "acme" })).await.unwrap();
    let key = account["public_key"].as_str().unwrap().to_string();
    through_a.call("role.create", &json!({ "account": "acme", "name": "r" })).await.unwrap();
    let user = through_a
        .call("user.create", &json!({ "account": "acme", "name": "dev1", "role": "r" }))
        .await
        .unwrap();
    // B joins; then A dies at once.
    let b = cluster.instance("b", 1);
    b.serving().await;
    a.kill();
    let through_b = cluster.admin(1).await;

    // B reads what A wrote, from the shared stream.
    let got =
        through_b.call("user.get", &json!({ "account": "acme", "name": "dev1" })).await.unwrap();
    assert_eq!(got["public_key"], user["public_key"]);
    assert_eq!(through_b.send(&GetStatus {}).await.unwrap().accounts, 4);

    // Every server holds the account: in its own resolver dir and by its own lookup.
    let authority = cluster.authority().await;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let file = node.resolver_dir().join(format!("{key}.jwt"));
        eventually(Duration::from_secs(15), &format!("server {i} to store acme"), || async {
            file.exists()
        })
        .await;
        let service = cluster.service_client(&authority, i).await;
        eventually(Duration::from_secs(15), &format!("server {i} to hold acme"), || async {
            held_jwt(&service, &key).await.is_some()
        })
        .await;
    }

    // A change through B after A's death reaches the servers too (B's publisher works on the
    // shared queue).
    through_b
        .call("account.update", &json!({ "name": "acme", "description": "by b" }))
        .await
        .unwrap();
    common::drained(&through_b).await;
    assert!(b.log_text().contains("opened the shared store"), "{}", b.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callout_logins_go_on_through_the_other_instance_when_one_is_killed() {
    let cluster = Cluster::start().await;
    // Every client logs in from 127.0.0.1 with one token, with the default brute-force
    // limits: logins in flight are not guesses.
    let mut a = cluster.instance("a", 0);
    let b = cluster.instance("b", 1);
    a.serving().await;
    b.serving().await;
    let admin = cluster.admin(0).await;
    admin.call("account.create", &json!({ "name": "acme" })).await.unwrap();
    admin
        .call(
            "role.create",
            &json!({ "account": "acme", "name": "r", "subscribe": { "allow": ["_INBOX.>"] } }),
        )
        .await
        .unwrap();
    admin
        .call("user.create", &json!({ "account": "acme", "name": "dev1", "role": "r" }))
        .await
        .unwrap();
    let created =
        admin.call("token.create", &json!({ "account": "acme", "user": "dev1" })).await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    // Every server must know acme before its clients can be placed in it.
    let key = admin.call("account.get", &json!({ "name": "acme" })).await.unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    for node in &cluster.nodes {
        let file = node.resolver_dir().join(format!("{key}.jwt"));
        eventually(Duration::from_secs(15), "every server to store acme", || async {
            file.exists()
        })
        .await;
    }

    // 200 clients log in over and over, spread over the servers; A is killed 1 s in.
    const CLIENTS: usize = 200;
    let start = Instant::now();
    let load = Duration::from_secs(4);
    let kill_at = Duration::from_secs(1);
    let urls = Arc::new(cluster.urls());
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let (token, urls) = (token.clone(), Arc::clone(&urls));
        clients.spawn(async move {
            let url = &urls[i % urls.len()];
            // (began, took, ok) for every login.
            let mut logins = Vec::new();
            while start.elapsed() < load {
                let began = start.elapsed();
                let t = Instant::now();
                let connected = tokio::time::timeout(
                    Duration::from_secs(10),
                    ConnectOptions::with_token(token.clone())
                        .max_reconnects(Some(0))
                        .connect(url.as_str()),
                )
                .await;
                let ok = match connected {
                    Ok(Ok(client)) => {
                        let flushed = client.flush().await.is_ok();
                        drop(client);
                        flushed
                    }
                    _ => false,
                };
                logins.push((began, t.elapsed(), ok));
            }
            logins
        });
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(start + kill_at)).await;
    a.kill();
    let killed = start.elapsed();
    let mut logins = Vec::new();
    while let Some(done) = clients.join_next().await {
        logins.extend(done.unwrap());
    }

    // Logins that began a second after the kill all succeeded, none near the callout
    // time-out (the server's auth timeout, 2 s).
    let settled = killed + Duration::from_secs(1);
    let after: Vec<_> = logins.iter().filter(|(began, _, _)| *began >= settled).collect();
    let failed = after.iter().filter(|(_, _, ok)| !ok).count();
    let slowest = after.iter().map(|(_, took, _)| *took).max().unwrap_or_default();
    let before_kill = logins.iter().filter(|(began, _, ok)| *began < killed && *ok).count();
    eprintln!(
        "logins: {} in all, {} succeeded before the kill, {} began 1 s after it: {failed} failed, slowest {slowest:?}",
        logins.len(),
        before_kill,
        after.len()
    );
    if failed > 0 {
        eprintln!("instance b's log:\n{}", b.log_text());
    }
    assert!(before_kill > 0, "no login succeeded before the kill");
    assert!(!after.is_empty(), "no login began a second after the kill");
    assert_eq!(failed, 0, "logins failed after the kill");
    assert!(slowest < Duration::from_secs(2), "a login waited out the callout time-out");
}

#[tokio::test]
async fn init_in_jetstream_mode_records_the_choice_and_serve_runs_on_the_stream() {
    use nats_authd::app;
    use nats_authd::bootstrap::{
        self, BootstrapError, InitExtras, InitOptions, Layout, MasterKeyOptions,
    };
    use nats_authd::connection::ConnectionSettings;
    use nats_authd::model::{self, AccountName, AccountRecord};
    use nats_authd::nats_server::{self, NatsServer};
    use nats_authd::server_config::ServerSettings;
    use nats_authd::store::choice::{self, Backend, StoreChoice, StoreRequest};
    use nats_authd::store::jetstream::{JetStreamOptions, JetStreamStore};
    use nats_authd::store::{Batch, Db, Expect, Op, Tree};

    let dir = tempfile::tempdir().unwrap();
    let layout = Layout { data_dir: dir.path().join("data"), out_dir: dir.path().join("out") };
    let settings = ServerSettings {
        host: "127.0.0.1".into(),
        port: common::free_port(),
        http_port: common::free_port(),
        server_name: "js-single".into(),
    };
    let options = InitOptions {
        layout: layout.clone(),
        master_key: MasterKeyOptions::default(),
        server: settings.clone(),
        operator_name: "js-operator".into(),
        xkey: true,
    };
    let js = StoreRequest { backend: Some(Backend::Jetstream), replicas: None };
    let outcome = bootstrap::init_with(
        &options,
        &InitExtras { store: js, ..InitExtras::default() },
        model::now(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.store, StoreChoice::jetstream(1));
    assert_eq!(choice::read(&layout.data_dir).unwrap(), Some(StoreChoice::jetstream(1)));
    // AUTH (and only AUTH) may use JetStream.
    let limits = |name: &str| {
        let authority = outcome.authority.clone();
        let name = AccountName::new(name).unwrap();
        async move { authority.account(&name).await.unwrap().limits }
    };
    let auth = limits("auth").await;
    assert_eq!(
        (auth.memory_storage, auth.disk_storage, auth.streams, auth.consumer),
        (-1, -1, -1, -1)
    );
    assert_eq!(limits("admin").await.disk_storage, 0);
    let local = std::fs::read_to_string(layout.local_config_file()).unwrap();
    assert!(local.contains("jetstream {"), "{local}");
    nats_server::check_config(&common::nats_server_bin(), &layout.config_file()).await.unwrap();
    drop(outcome);

    // The choice is kept: a conflicting --store is refused, none (or the same) is fine.
    let sled = StoreRequest { backend: Some(Backend::Sled), replicas: None };
    let refused = bootstrap::init_with(
        &options,
        &InitExtras { store: sled, ..InitExtras::default() },
        model::now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, BootstrapError::StoreConflict { .. }), "{refused}");
    let three = StoreRequest { backend: None, replicas: Some(3) };
    assert!(bootstrap::init_with(
        &options,
        &InitExtras { store: three, ..InitExtras::default() },
        model::now()
    )
    .await
    .is_err());
    let kept = bootstrap::init(&options, model::now()).await.unwrap();
    assert_eq!(kept.store, StoreChoice::jetstream(1));

    // The generated config and local.conf run a server on which serve uses the stream.
    let _server = NatsServer::start(
        &common::nats_server_bin(),
        &layout.config_file(),
        &dir.path().join("nats.log"),
        &settings.listen_addr(),
        &[],
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    let seed = kept.authority.clone();
    let app_settings = app::Settings {
        connection: ConnectionSettings { urls: vec![settings.client_url()], ..Default::default() },
        store: kept.store.clone(),
        ..app::Settings::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let running =
        tokio::spawn(app::run(kept.authority, app_settings, stop.clone().cancelled_owned()));
    let creds = std::fs::read_to_string(layout.admin_creds()).unwrap();
    let client = ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(settings.client_url())
        .await
        .unwrap();
    let admin = nats_authd::client::AdminClient::new(client, "authd", Duration::from_secs(10));
    eventually(Duration::from_secs(15), "the service to answer", || async {
        admin.send(&GetStatus {}).await.is_ok()
    })
    .await;
    admin.call("account.create", &json!({ "name": "acme" })).await.unwrap();

    // acme is in the stream, not in the local seed.
    let service = {
        let settings = ConnectionSettings {
            urls: vec![settings.client_url()],
            require_nats: true,
            ..Default::default()
        };
        nats_authd::connection::connect(&seed, &settings, std::future::pending())
            .await
            .unwrap()
            .client
    };
    let stream = Db::new(Arc::new(
        JetStreamStore::open(service, &JetStreamOptions::default()).await.unwrap(),
    ));
    assert!(stream.get::<AccountRecord>("acme").await.unwrap().is_some());
    assert!(seed.db().get::<AccountRecord>("acme").await.unwrap().is_none());

    // Another handle's commit wakes whoever waits on the tree here (the change follower).
    let other = {
        let client = nats_authd::connection::connect(
            &seed,
            &ConnectionSettings {
                urls: vec![settings.client_url()],
                require_nats: true,
                ..Default::default()
            },
            std::future::pending(),
        )
        .await
        .unwrap();
        let db = Db::new(Arc::new(
            JetStreamStore::open(client.client.clone(), &JetStreamOptions::default())
                .await
                .unwrap(),
        ));
        (db, client)
    };
    let (followed, connection) = other;
    let mut woken = followed.changes(Tree::Meta);
    let follow_stop = tokio_util::sync::CancellationToken::new();
    let follower = tokio::spawn(nats_authd::shared::follow(
        followed.clone(),
        connection.client.clone(),
        connection.state.clone(),
        follow_stop.clone(),
    ));
    // The follower subscribes in its own task: commit until it has seen one (bounded).
    woken.borrow_and_update();
    let mut seen = false;
    for n in 0..20u32 {
        let mut batch = Batch::new();
        let value = n.to_string().into_bytes();
        batch.push(Op::Put { tree: Tree::Meta, key: "probe".into(), value, expect: Expect::Any });
        stream.commit(batch).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(250), woken.changed()).await.is_ok() {
            seen = true;
            break;
        }
    }
    assert!(seen, "another handle's commit never woke this one");
    assert!(followed.meta("probe").await.unwrap().is_some());
    follow_stop.cancel();
    follower.await.unwrap().unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// Not a check: prints what a read costs through the stream leader vs any replica, from each
/// server (`cargo test --test cluster read_paths -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn read_paths() {
    use nats_authd::store::jetstream::{JetStreamOptions, JetStreamStore, ReadPath};
    use nats_authd::store::{Batch, Expect, Op, Store, Tree};

    let cluster = Cluster::start().await;
    let authority = cluster.authority().await;
    let options = JetStreamOptions { replicas: 3, ..JetStreamOptions::default() };
    for node in 0..3 {
        let client = cluster.service_client(&authority, node).await;
        let store = JetStreamStore::open(client, &options).await.unwrap();
        let mut batch = Batch::new();
        let value = vec![b'x'; 300];
        batch.push(Op::Put { tree: Tree::Users, key: "a/b".into(), value, expect: Expect::Any });
        store.commit(batch).await.unwrap();
        for path in [ReadPath::Direct, ReadPath::Leader] {
            let store = store.clone().with_read_path(path);
            let mut took = Vec::new();
            for _ in 0..300 {
                let t = Instant::now();
                store.get(Tree::Users, "a/b").await.unwrap().unwrap();
                took.push(t.elapsed());
            }
            took.sort();
            eprintln!("server c{node} {path:?}: median {:?}, p99 {:?}", took[150], took[297]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_admitted_by_one_instance_is_kicked_when_the_other_disables_its_user() {
    let cluster = Cluster::start().await;
    let mut instances = [cluster.instance("a", 0), cluster.instance("b", 1)];
    for instance in &instances {
        instance.serving().await;
    }
    let admin = cluster.admin(1).await;
    tenant(&cluster, &admin, 1).await;

    // The servers pick an instance per login: see which one admitted it.
    let (client, mut events) = login(&cluster, 0, "dev1", PASSWORD).await.unwrap();
    client.flush().await.unwrap();
    eventually(Duration::from_secs(2), "an instance to log its decision", || async {
        instances.iter().map(|i| i.decisions()).sum::<usize>() == 1
    })
    .await;
    let admitter = instances.iter().position(|i| i.decisions() == 1).unwrap();
    let other = 1 - admitter;

    // The admitter dies; the other handles the deactivation (it is the only one left) and
    // kicks the session the admitter recorded in the shared store.
    instances[admitter].kill();
    admin
        .call("user.update", &json!({ "account": "acme", "name": "dev1", "active": false }))
        .await
        .unwrap();
    common::disconnected_within(&mut events, Duration::from_secs(1)).await;
    // Logged once the server confirms the kick, which may be after the client hears of it.
    eventually(Duration::from_secs(2), "the other instance to log the kick", || async {
        instances[other].log_text().contains("kicked a revoked connection")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_spread_over_both_instances_are_limited_as_if_one_saw_them() {
    // The default limits: 5 failures per login and address per minute.
    let cluster = Cluster::start().await;
    let instances = [cluster.instance("a", 0), cluster.instance("b", 1)];
    for instance in &instances {
        instance.serving().await;
    }
    let admin = cluster.admin(0).await;
    const USERS: usize = 6;
    tenant(&cluster, &admin, USERS).await;
    let decided = || instances.iter().map(|i| i.decisions()).collect::<Vec<_>>();

    // The servers pick an instance per login at random. Five wrong passwords from
    // 127.0.0.1: when both instances decided some (each fewer than its limit of five), the
    // right password must be refused too, by either instance. A user whose five all landed
    // on one instance proves nothing: the next user is tried.
    for user in (1..=USERS).map(|i| format!("dev{i}")) {
        let before = decided();
        for attempt in 0..5 {
            let Err(e) = login(&cluster, attempt % 3, &user, "wrong password").await else {
                panic!("a wrong password was let in");
            };
            assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}");
            let total: usize = before.iter().sum::<usize>() + attempt + 1;
            eventually(Duration::from_secs(2), "the decision to be logged", || async {
                decided().iter().sum::<usize>() == total
            })
            .await;
        }
        let after = decided();
        let per_instance: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        if per_instance.contains(&0) {
            eprintln!("{user}: all five on one instance ({per_instance:?}); next user");
            continue;
        }
        eprintln!("{user}: the five failures were decided {per_instance:?} by the two instances");
        for node in [0, 1, 2] {
            let Err(e) = login(&cluster, node, &user, PASSWORD).await else {
                panic!("{user} was let in on server {node} past the shared limit");
            };
            assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}");
        }
        let logs: String = instances.iter().map(|i| i.log_text()).collect();
        assert!(logs.contains("rate_limited"), "{logs}");
        return;
    }
    panic!("every user's failures landed on one instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_queued_when_the_pushing_instance_dies_are_pushed_by_the_other() {
    use nats_authd::api::account::CreateAccount;
    use nats_authd::lease;
    use nats_authd::manage::Manager;
    use nats_authd::model::{self, AccountName};
    use nats_authd::password::PasswordHasher;
    use nats_authd::queue::ClaimsQueue;
    use nats_authd::store::jetstream::JetStreamOptions;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let cluster = Cluster::start().await;
    let mut instances = [cluster.instance("a", 0), cluster.instance("b", 1)];
    let ids = [instances[0].serving().await, instances[1].serving().await];

    // The test's own view of the shared store (no publisher of its own).
    let seed = cluster.authority().await;
    let client = cluster.service_client(&seed, 2).await;
    let options = JetStreamOptions { replicas: 3, ..JetStreamOptions::default() };
    let shared = nats_authd::shared::open(&seed, client, &options).await.unwrap();
    let db = shared.db().clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let holder = loop {
        if let Some(lease) = lease::current(&db).await.unwrap() {
            break lease.holder.to_string();
        }
        assert!(Instant::now() < deadline, "no instance holds the publisher lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pusher = ids.iter().position(|id| *id == holder).unwrap_or_else(|| {
        panic!("the lease holder {holder} is neither instance {ids:?}");
    });
    let other = 1 - pusher;

    // Freeze the pusher, then queue pushes (written to the shared store, as any instance's
    // change would be; API requests could be handed to the frozen instance).
    kill(Pid::from_raw(instances[pusher].pid() as i32), Signal::SIGSTOP).unwrap();
    let manager = Manager::new(shared.clone(), PasswordHasher::default());
    let mut keys = Vec::new();
    for i in 0..5 {
        let request = CreateAccount {
            name: AccountName::new(&format!("t{i}")).unwrap(),
            description: None,
            limits: None,
            exports: Vec::new(),
            imports: Vec::new(),
        };
        let view = manager.create_account(request, model::now()).await.unwrap();
        keys.push(view.public_key);
    }
    let queue = ClaimsQueue::new(db.clone());
    let queued = queue.counts().await.unwrap().pending;
    assert!(queued >= keys.len(), "{queued} pushes queued");

    // The pusher dies with them queued; the other takes the lease over and pushes them all.
    instances[pusher].kill();
    for key in &keys {
        held_everywhere(&cluster, key).await;
    }
    eventually(Duration::from_secs(15), "the queue to drain", || async {
        queue.counts().await.is_ok_and(|c| c.pending == 0 && c.failed == 0)
    })
    .await;
    let lease = lease::current(&db).await.unwrap().unwrap();
    assert_eq!(lease.holder.to_string(), ids[other]);
    eprintln!("{queued} pushes queued when the pusher died; the other pushed them all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_quorum_changes_are_refused_as_unavailable() {
    use nats_authd::client::ClientError;

    let mut cluster = Cluster::start().await;
    let instance = cluster.instance("a", 0);
    instance.serving().await;
    let admin = cluster.admin(0).await;
    admin.call("account.create", &json!({ "name": "acme" })).await.unwrap();

    // Two of three servers gone: the stream has no leader.
    for node in [1, 2] {
        let server = cluster.nodes[node].server.take().unwrap();
        server.stop(Duration::from_secs(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        match admin.call("account.create", &json!({ "name": "globex" })).await {
            Err(ClientError::Service { code, kind, message }) => break (code, kind, message),
            // Until the survivor notices the others are gone, a write may still time out.
            other => {
                assert!(Instant::now() < deadline, "still no clear refusal: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let log = instance.log_text();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (503, "unavailable"),
        "{}; the instance's log ends:\n{}",
        refused.2,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(refused.2.contains("retry later"), "{}", refused.2);
}
