//! Queued account pushes survive the service being killed, and go out when it comes back.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{account_name, allow, eventually, role_name, user_name, Stack};
use nats_authd::api::account::{CreateAccount, ListAccounts};
use nats_authd::api::ops::GetStatus;
use nats_authd::api::role::CreateRole;
use nats_authd::api::user::{CreateUser, GetCreds, UserRef};

const BIN: &str = env!("CARGO_BIN_EXE_nats-authd");

fn serve(stack: &Stack, log: &std::path::Path) -> std::process::Child {
    Command::new(BIN)
        .args(["--log", "info", "serve", "--data-dir"])
        .arg(&stack.layout.data_dir)
        .args(["--nats-url", &stack.url()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn pending_pushes_survive_kill_9_and_go_out_after_restart() {
    let mut stack = Stack::start().await;
    {
        // Acknowledged changes, queued while no service runs.
        let manager = stack.manager();
        let now = nats_authd::model::now();
        for name in ["a1", "a2", "a3"] {
            manager.create_account(CreateAccount::new(account_name(name)), now).await.unwrap();
        }
        let all = CreateRole {
            publish: allow(&[">"]),
            ..CreateRole::new(account_name("a1"), role_name("all"))
        };
        manager.create_role(all, now).await.unwrap();
        let u = CreateUser {
            role: Some("all".into()),
            ..CreateUser::new(account_name("a1"), user_name("u"))
        };
        manager.create_user(u, now).await.unwrap();
        // AUTH is not: its allowed accounts are "*", so its JWT does not change with tenants.
        assert_eq!(
            manager.pending(Default::default(), 1 << 20).await.unwrap().items.len(),
            3,
            "a1..a3 are queued"
        );
    }
    stack.server.take().unwrap().stop(Duration::from_secs(5)).await;
    stack.release_store();

    // The service starts with no server, holds the queue, and is killed outright.
    let log = stack.dir.path().join("serve-1.log");
    let mut first = serve(&stack, &log);
    eventually(Duration::from_secs(20), "serve to wait for NATS", || async {
        std::fs::read_to_string(&log).unwrap_or_default().contains("waiting for NATS")
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();

    // Server and service back: the queue drains and the accounts work.
    stack.start_server().await;
    let log = stack.dir.path().join("serve-2.log");
    let mut second = serve(&stack, &log);
    let admin = stack.admin().await;
    eventually(Duration::from_secs(20), "the queue to drain after restart", || async {
        let status = admin.send(&GetStatus {}).await.unwrap();
        status.queue_depth == 0 && status.failed_pushes == 0
    })
    .await;
    let accounts = admin.list_all(&ListAccounts::default()).await.unwrap();
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    for name in ["a1", "a2", "a3"] {
        assert!(names.contains(&name), "{name} lost: {names:?}");
    }
    let u = UserRef::new(account_name("a1"), user_name("u"));
    let creds = admin.send(&GetCreds(u)).await.unwrap().creds;
    let (client, _) = stack.connect_creds(&creds).await;
    client.publish("hello", "a1".into()).await.unwrap();
    client.flush().await.unwrap();

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(second.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
}

#[tokio::test]
async fn an_account_the_store_no_longer_has_is_removed_from_the_server_on_connect() {
    let stack = Stack::start().await;
    let service = stack.serve();
    let admin = stack.admin().await;
    let key = common::tenant(&admin, "ghost").await.account.public_key;
    common::drained(&admin).await;
    service.stop().await.unwrap();

    // A delete whose queue entry was lost: the record is gone, the server still has it.
    let mut batch = nats_authd::store::Batch::new();
    batch.delete::<nats_authd::model::AccountRecord>("ghost");
    stack.authority().db().commit(batch).await.unwrap();
    let probe = stack.service_client().await;
    assert!(common::held_jwt(&probe, &key).await.is_some());

    let _service = stack.serve();
    common::await_held(&probe, &key, false, Duration::from_secs(20)).await;
}
