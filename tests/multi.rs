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
