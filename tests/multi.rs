//! Several instances over one store: the publisher lease, requests answered once, brute-force
//! limits shared over NATS, claims pushes to every server of a cluster, `status`.

mod common;

use std::time::Duration;

use common::await_held;
use common::multi::{run_instance, JsServer};
use nats_authd::instance::InstanceId;
use nats_authd::lease::{self, Lease, LeaseSettings};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn fast_lease() -> LeaseSettings {
    LeaseSettings {
        ttl: Duration::from_millis(1500),
        renew_every: Duration::from_millis(200),
        skew_margin: Duration::from_millis(500),
    }
}

async fn until(rx: &mut watch::Receiver<bool>, want: bool, within: Duration) {
    tokio::time::timeout(within, rx.wait_for(|h| *h == want))
        .await
        .unwrap_or_else(|_| panic!("lease held = {want} within {within:?}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_holds_the_lease_and_another_takes_over_when_it_stops_or_dies() {
    let js = JsServer::start().await;
    let (a_id, b_id, c_id) =
        (InstanceId::generate(), InstanceId::generate(), InstanceId::generate());
    let (a, mut a_held) = Lease::new(js.db().await, a_id.clone(), fast_lease());
    let a_stop = CancellationToken::new();
    let a_task = tokio::spawn(a.run(a_stop.clone().cancelled_owned()));
    until(&mut a_held, true, Duration::from_secs(10)).await;

    let db = js.db().await;
    let (b, mut b_held) = Lease::new(db.clone(), b_id.clone(), fast_lease());
    let b_stop = CancellationToken::new();
    let b_task = tokio::spawn(b.run(b_stop.clone().cancelled_owned()));
    // Several renewals of A's: B never gets it meanwhile.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!*b_held.borrow(), "B must not hold the lease while A renews it");
        assert!(*a_held.borrow());
    }
    assert_eq!(lease::current(&db).await.unwrap().unwrap().holder, a_id);

    // A clean stop releases: B takes over at its next try, well before A's TTL would pass.
    a_stop.cancel();
    a_task.await.unwrap();
    until(&mut b_held, true, Duration::from_secs(10)).await;
    assert_eq!(lease::current(&db).await.unwrap().unwrap().holder, b_id);

    // B dies without releasing (the task is aborted): C takes over once B's lease expires.
    let (c, mut c_held) = Lease::new(js.db().await, c_id.clone(), fast_lease());
    let c_stop = CancellationToken::new();
    let c_task = tokio::spawn(c.run(c_stop.clone().cancelled_owned()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!*c_held.borrow());
    b_task.abort();
    let _ = b_task.await;
    drop(b_stop);
    until(&mut c_held, true, Duration::from_secs(10)).await;
    assert_eq!(lease::current(&db).await.unwrap().unwrap().holder, c_id);
    c_stop.cancel();
    c_task.await.unwrap();
}

fn instance_settings(stack: &common::Stack) -> nats_authd::app::Settings {
    nats_authd::app::Settings {
        connection: stack.connection_settings(),
        lease: fast_lease(),
        ..nats_authd::app::Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_server_is_counted_as_one_without_asking() {
    let stack = common::Stack::start().await;
    let api = nats_authd::server_api::ServerApi::new(stack.service_client().await);
    assert_eq!(api.server_count().await, 1);
    let auth = stack.authority().account(&common::account_name("auth")).await.unwrap();
    let held = api.lookup(auth.public_key()).await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(held[0].is_some(), "the server holds AUTH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_go_out_from_whichever_instance_holds_the_lease() {
    let stack = common::Stack::start().await;
    let js = JsServer::start().await;
    let auths = js.shared_authorities(&stack, 2).await;
    let a = run_instance(&auths[0], instance_settings(&stack));
    let admin = stack.admin().await;
    let b = run_instance(&auths[1], instance_settings(&stack));
    let service = stack.service_client().await;

    let acme = admin.send(&common_account("acme")).await.unwrap();
    await_held(&service, &acme.public_key, true, Duration::from_secs(20)).await;

    // status names both instances, the one that answered, and the one that publishes.
    common::eventually(Duration::from_secs(10), "status to list both instances", || async {
        let status = admin.send(&nats_authd::api::ops::GetStatus {}).await.unwrap();
        let ids: Vec<&str> = status.instances.iter().map(|i| i.id.as_str()).collect();
        ids.len() == 2
            && ids.contains(&status.instance.as_str())
            && status.publisher.as_deref().is_some_and(|p| ids.contains(&p))
    })
    .await;

    // The holder stops cleanly: the other instance pushes the next change.
    a.stop().await.unwrap();
    let beta = admin.send(&common_account("beta")).await.unwrap();
    await_held(&service, &beta.public_key, true, Duration::from_secs(20)).await;

    // The other one starts again, then the holder dies without releasing: after its lease
    // expires the survivor pushes.
    let a = run_instance(&auths[0], instance_settings(&stack));
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill().await;
    let gamma = admin.send(&common_account("gamma")).await.unwrap();
    await_held(&service, &gamma.public_key, true, Duration::from_secs(20)).await;
    a.stop().await.unwrap();
}

fn common_account(name: &str) -> nats_authd::api::account::CreateAccount {
    nats_authd::api::account::CreateAccount::new(common::account_name(name))
}

/// Every answer to one request that every server of the cluster answers, within a second.
async fn all_answers(client: &async_nats::Client, subject: String) -> Vec<String> {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish_with_reply(subject, inbox, "".into()).await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
        out.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_push_reaches_every_server_and_a_kick_finds_the_admitting_one() {
    let mut stack = common::Stack::init().await;
    let cluster = common::multi::Cluster::start(&mut stack, 3).await;
    let service = stack.service_client().await;
    common::eventually(Duration::from_secs(15), "the cluster to form", || async {
        all_answers(&service, "$SYS.REQ.CLAIMS.LIST".into()).await.len() == 3
    })
    .await;
    let running = stack.serve();
    let admin = stack.admin().await;
    let tenant = common::tenant(&admin, "acme").await;
    tenant.role("dev", &["acme.>"], &["acme.>", "_INBOX.>"]).await;
    tenant.user("dev1", "dev", Some("correct horse battery")).await;
    common::drained(&admin).await;

    // Every server holds the JWT the last push confirmed: in its resolver dir and by lookup.
    let key = tenant.account.public_key.clone();
    let held = all_answers(&service, format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.LOOKUP")).await;
    assert_eq!(held.len(), 3, "every server answers the lookup");
    assert!(held.iter().all(|jwt| *jwt == held[0] && !jwt.is_empty()), "one JWT everywhere");
    // The service's client of the claims API counts the servers and reads every answer.
    let api = nats_authd::server_api::ServerApi::new(service.clone());
    assert_eq!(api.server_count().await, 3);
    let looked_up = api.lookup(&key).await.unwrap();
    assert_eq!(looked_up, vec![Some(held[0].clone()); 3]);
    assert!(api.list().await.unwrap().contains(&key));
    let refused = api.update("not-a-jwt").await.unwrap_err();
    assert!(matches!(refused, nats_authd::server_api::ServerApiError::Refused { .. }), "{refused}");
    let mut dirs = vec![stack.layout.resolver_dir()];
    dirs.extend((1..3).map(|i| stack.dir.path().join(format!("out-{i}")).join("jwt")));
    for dir in dirs {
        let file = std::fs::read_to_string(dir.join(format!("{key}.jwt"))).unwrap();
        assert_eq!(file.trim(), held[0], "{} holds the pushed JWT", dir.display());
    }

    // A login admitted by the third server is kicked there when its user is disabled.
    let options = async_nats::ConnectOptions::with_user_and_password(
        "dev1".into(),
        "correct horse battery".into(),
    );
    let (client, mut events) = stack.login_at(&cluster.urls[2], options).await.unwrap();
    client.flush().await.unwrap();
    admin
        .call(
            "user.update",
            &serde_json::json!({ "account": "acme", "name": "dev1", "active": false }),
        )
        .await
        .unwrap();
    common::disconnected_within(&mut events, Duration::from_secs(2)).await;
    running.stop().await.unwrap();
}

mod dedup {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use nats_authd::authority::Authority;
    use nats_authd::instance::InstanceId;
    use nats_authd::service::dedup::{record_key, Dedup, KEY_PREFIX};
    use nats_authd::service::reply::Reply;
    use nats_authd::store::{Batch, Expect, Op, Tree};

    use super::common;
    use super::JsServer;

    const SECRET: &str = "SUAJUSTASECRETLOOKINGSEEDTHATMUSTNOTBESTOREDPLAIN";

    fn reply(text: &str) -> Reply {
        Reply { body: bytes::Bytes::from(text.to_string()), error: None }
    }

    /// Two instances over one store: a retry reaching the other instance while the first
    /// attempt runs waits for it and gets its reply; later retries too; the reply is sealed.
    async fn retries_are_answered_once_across_instances(a: Authority, b: Authority) {
        let (da, db) = (
            Dedup::with_store(a.clone(), InstanceId::generate()),
            Dedup::with_store(b, InstanceId::generate()),
        );
        let applied = Arc::new(AtomicUsize::new(0));
        let run = |dedup: &Dedup, text: &'static str| {
            let (dedup, applied) = (dedup.clone(), applied.clone());
            async move {
                dedup
                    .run(Some("req-1"), || async move {
                        applied.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        reply(text)
                    })
                    .await
            }
        };
        let run_as = |dedup: &Dedup, id: &'static str, text: &'static str| {
            let (dedup, applied) = (dedup.clone(), applied.clone());
            async move {
                dedup
                    .run(Some(id), || async move {
                        applied.fetch_add(1, Ordering::SeqCst);
                        reply(text)
                    })
                    .await
            }
        };
        let first = tokio::spawn(run(&da, SECRET));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let retry = run(&db, "second").await;
        assert_eq!(first.await.unwrap(), reply(SECRET));
        assert_eq!(retry, reply(SECRET), "the retry on the other instance got the first reply");
        assert_eq!(run(&db, "third").await, reply(SECRET));
        assert_eq!(applied.load(Ordering::SeqCst), 1, "applied once");

        let rows = a.db().store().scan(Tree::Runtime, KEY_PREFIX).await.unwrap();
        assert_eq!(rows.len(), 1);
        let stored = String::from_utf8_lossy(&rows[0].1);
        assert!(!stored.contains(SECRET) && !stored.contains("req-1"), "sealed, id hashed");

        // A claim whose instance died (no reply, claimed long ago) is taken over by a retry;
        // an expired record is pruned.
        let dead = serde_json::json!({ "created_at_ms": 1_000, "by": "dead/00000000" });
        let key = record_key("req-2");
        let plant_dead_claim = || async {
            let mut batch = Batch::new();
            batch.push(Op::Put {
                tree: Tree::Runtime,
                key: key.clone(),
                value: serde_json::to_vec(&dead).unwrap(),
                expect: Expect::Any,
            });
            a.db().commit(batch).await.unwrap();
        };
        plant_dead_claim().await;
        assert_eq!(run_as(&db, "req-2", "taken over").await, reply("taken over"));
        assert_eq!(applied.load(Ordering::SeqCst), 2, "a dead claim does not block a retry");
        // Expired: made long ago again, then pruned.
        plant_dead_claim().await;
        assert_eq!(da.prune().await.unwrap(), 1);
        assert!(a.db().store().get(Tree::Runtime, &key).await.unwrap().is_none());
        assert_eq!(da.prune().await.unwrap(), 0, "the fresh record stays");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_jetstream() {
        let stack = common::Stack::init().await;
        let js = JsServer::start().await;
        let mut auths = js.shared_authorities(&stack, 2).await;
        let b = auths.pop().unwrap();
        retries_are_answered_once_across_instances(auths.pop().unwrap(), b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sled() {
        let stack = common::Stack::init().await;
        let a = stack.authority().clone();
        retries_are_answered_once_across_instances(a.clone(), a).await;
    }
}

mod limits {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use nats_authd::callout::limiter::{Limiter, Limits};
    use nats_authd::callout::shared_limits;
    use nats_authd::instance::InstanceId;
    use nats_authd::names::LIMITER_SUBJECT;
    use tokio_util::sync::CancellationToken;

    use super::common;
    use super::JsServer;

    const LOGIN: &str = "acme/dev1";
    const HOST: &str = "10.0.0.7";

    async fn counted(limiter: &Limiter, n: u32) {
        common::eventually(Duration::from_secs(5), "the failure to be counted", || async {
            limiter.failures(LOGIN, HOST) == n
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_alternating_between_two_instances_are_limited_as_if_one_saw_them() {
        let server = JsServer::start().await;
        let stop = CancellationToken::new();
        let limits = Limits { per_login: 5, per_host: 50, window: Duration::from_secs(60) };
        let mut limiters = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let limiter = Arc::new(Limiter::new(limits));
            tasks.push(tokio::spawn(shared_limits::run(
                server.client().await,
                InstanceId::generate(),
                Arc::clone(&limiter),
                stop.clone().cancelled_owned(),
            )));
            limiters.push(limiter);
        }
        // Both subscribed before the first outcome goes out.
        let probe = server.client().await;
        probe.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        for i in 0..5u32 {
            let here = &limiters[(i % 2) as usize];
            assert!(here.allows(LOGIN, HOST), "attempt {} is allowed", i + 1);
            here.failed(here.reserve(LOGIN, HOST).unwrap());
            for limiter in &limiters {
                counted(limiter, i + 1).await;
            }
        }
        for (n, limiter) in limiters.iter().enumerate() {
            assert!(!limiter.allows(LOGIN, HOST), "the 6th attempt is refused on instance {n}");
            assert!(limiter.reserve(LOGIN, HOST).is_none());
            assert!(limiter.allows(LOGIN, "10.0.0.8"), "another address keeps its allowance");
        }

        // The owner gets in on one instance (say, after the window): the count clears on both.
        limiters[0].succeeded_uncharged(LOGIN, HOST);
        for limiter in &limiters {
            counted(limiter, 0).await;
        }
        stop.cancel();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }

    /// The subject lives in AUTH, where the service may use it; an admin publishing the same
    /// subject in ADMIN does not reach it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_service_user_reaches_the_limiter_subject() {
        let stack = common::Stack::start().await;
        let listener = stack.service_client().await;
        let mut sub = listener.subscribe(LIMITER_SUBJECT).await.unwrap();
        listener.flush().await.unwrap();
        let creds = std::fs::read_to_string(stack.layout.admin_creds()).unwrap();
        let (admin, _events) = stack.connect_creds(&creds).await;
        admin.publish(LIMITER_SUBJECT, "from admin".into()).await.unwrap();
        admin.flush().await.unwrap();
        let other = stack.service_client().await;
        other.publish(LIMITER_SUBJECT, "from a service instance".into()).await.unwrap();
        other.flush().await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
        assert_eq!(&got.payload[..], b"from a service instance");
        let more = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(more.is_err(), "nothing from ADMIN arrived in AUTH");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_bigger_than_a_store_batch_is_deleted_with_its_login_records() {
    use nats_authd::api::account::{CreateAccount, DeleteAccount};
    use nats_authd::manage::accounts::CASCADE_BATCH;
    use nats_authd::manage::Manager;
    use nats_authd::model::{
        self, AccountName, LoginRecord, PasswordHash, UserKind, UserName, UserRecord,
    };
    use nats_authd::password::PasswordHasher;
    use nats_authd::store::jetstream::MAX_BATCH_MESSAGES;
    use nats_authd::store::Batch;

    let stack = common::Stack::init().await;
    let js = JsServer::start().await;
    let authority = js.shared_authorities(&stack, 1).await.remove(0);
    let db = authority.db().clone();
    let manager = Manager::new(authority.clone(), PasswordHasher::default());
    let acme = AccountName::new("acme").unwrap();
    let request = CreateAccount {
        name: acme.clone(),
        description: None,
        limits: None,
        exports: Vec::new(),
        imports: Vec::new(),
    };
    manager.create_account(request, model::now()).await.unwrap();
    // More users than one JetStream batch holds (one batch for all failed with BatchTooLarge),
    // every fourth with a password and its login record: written straight to the store, which
    // is all the delete reads.
    let users = MAX_BATCH_MESSAGES + 200;
    const { assert!(CASCADE_BATCH * 2 < MAX_BATCH_MESSAGES) };
    let master = authority.master();
    for chunk in (0..users).collect::<Vec<_>>().chunks(200) {
        let mut batch = Batch::new();
        for i in chunk {
            let name = UserName::new(&format!("u{i:05}")).unwrap();
            let mut user =
                UserRecord::new(acme.clone(), name.clone(), UserKind::Member, master, model::now());
            if i % 4 == 0 {
                user.password_hash = Some(PasswordHash::new("$argon2id$placeholder".into()));
                batch.put(&LoginRecord { name, accounts: vec![acme.clone()] });
            }
            batch.put(&user);
        }
        db.commit(batch).await.unwrap();
    }

    let deleted = manager
        .delete_account(DeleteAccount { name: acme.clone(), cascade: true }, model::now())
        .await
        .unwrap();
    assert_eq!(deleted.users, users);
    assert!(db.list::<UserRecord>("acme/").await.unwrap().is_empty());
    assert!(db.list::<LoginRecord>("").await.unwrap().is_empty());
    assert!(db.get::<model::AccountRecord>("acme").await.unwrap().is_none());
}
