//! Queued account pushes survive the service being killed, and go out when it comes back.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Stack};
use serde_json::json;

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
            manager
                .create_account(serde_json::from_value(json!({ "name": name })).unwrap(), now)
                .await
                .unwrap();
        }
        manager
            .create_role(
                serde_json::from_value(
                    json!({ "account": "a1", "name": "all", "publish": {"allow": [">"]} }),
                )
                .unwrap(),
                now,
            )
            .await
            .unwrap();
        manager
            .create_user(
                serde_json::from_value(json!({ "account": "a1", "name": "u", "role": "all" }))
                    .unwrap(),
                now,
            )
            .await
            .unwrap();
        // AUTH is not: its allowed accounts are "*", so its JWT does not change with tenants.
        assert_eq!(manager.pending().await.unwrap().len(), 3, "a1..a3 are queued");
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
        let status = admin.call("status", &json!({})).await.unwrap();
        status["queue_depth"] == 0 && status["failed_pushes"] == 0
    })
    .await;
    let accounts = admin.call("account.list", &json!({})).await.unwrap();
    let names: Vec<&str> =
        accounts.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    for name in ["a1", "a2", "a3"] {
        assert!(names.contains(&name), "{name} lost: {names:?}");
    }
    let creds = admin.call("user.creds", &json!({ "account": "a1", "name": "u" })).await.unwrap();
    let (client, _) = stack.connect_creds(creds["creds"].as_str().unwrap()).await;
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
    let ghost = admin.call("account.create", &json!({ "name": "ghost" })).await.unwrap();
    let key = ghost["public_key"].as_str().unwrap().to_string();
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
