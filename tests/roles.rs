//! Editing roles: an edit never widens by accident, and a narrowed role reaches live
//! connections at once.

mod common;

use std::time::Duration;

use common::{creds, disconnected_within, drained, violation, Stack};
use nats_authd::api::account::CreateAccount;
use nats_authd::api::role::{CreateRole, PermissionInput, RoleRef, UpdateRole};
use nats_authd::api::user::{CreateUser, Password};
use nats_authd::claims::Permission;
use nats_authd::client::AdminClient;
use nats_authd::model::{AccountName, RoleName, UserName};

const PW: &str = "correct horse battery";

fn acme() -> AccountName {
    AccountName::new("acme").unwrap()
}

fn sensor() -> RoleName {
    RoleName::new("sensor").unwrap()
}

fn perm(allow: &[&str], deny: &[&str]) -> Permission {
    Permission {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
    }
}

/// acme with role `sensor` (publish `sensors.>`, subscribe `_INBOX.>` and `sensors.>`) and
/// user dev1 holding it, with a password.
async fn setup(admin: &AdminClient) {
    admin.send(&CreateAccount::new(acme())).await.unwrap();
    let role = CreateRole {
        publish: PermissionInput::lists(&["sensors.>"], &[]),
        subscribe: PermissionInput::lists(&["_INBOX.>", "sensors.>"], &[]),
        ..CreateRole::new(acme(), sensor())
    };
    admin.send(&role).await.unwrap();
    let dev1 = CreateUser {
        role: Some("sensor".into()),
        password: Some(Password::new(PW)),
        ..CreateUser::new(acme(), UserName::new("dev1").unwrap())
    };
    admin.send(&dev1).await.unwrap();
    drained(admin).await;
}

#[tokio::test]
async fn an_edit_replaces_only_the_lists_it_gives() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    setup(&admin).await;

    // Each list alone: the other three stay as they were.
    let edits = [
        (PermissionInput { deny: Some(vec!["sensors.secret".into()]), ..Default::default() }, true),
        (
            PermissionInput {
                allow: Some(vec!["sensors.>".into(), "alerts.>".into()]),
                ..Default::default()
            },
            true,
        ),
        (
            PermissionInput { deny: Some(vec!["sensors.private".into()]), ..Default::default() },
            false,
        ),
        (PermissionInput { allow: Some(vec!["_INBOX.>".into()]), ..Default::default() }, false),
    ];
    let mut want_pub = perm(&["sensors.>"], &[]);
    let mut want_sub = perm(&["_INBOX.>", "sensors.>"], &[]);
    for (edit, publish) in edits {
        let mut update = UpdateRole::new(acme(), sensor());
        let want = if publish { &mut want_pub } else { &mut want_sub };
        if let Some(allow) = &edit.allow {
            want.allow = allow.clone();
        }
        if let Some(deny) = &edit.deny {
            want.deny = deny.clone();
        }
        if publish {
            update.publish = Some(edit);
        } else {
            update.subscribe = Some(edit);
        }
        let want = (PermissionInput::of(&want_pub), PermissionInput::of(&want_sub));
        let view = admin.send(&update).await.unwrap();
        assert_eq!((&view.publish, &view.subscribe), (&want.0, &want.1));
        let stored = admin.send(&RoleRef::new(acme(), sensor())).await.unwrap();
        assert_eq!((&stored.publish, &stored.subscribe), (&want.0, &want.1));
    }

    // Adding and removing single subjects keeps the rest of the list.
    let edit = UpdateRole {
        publish: Some(PermissionInput {
            add_allow: Some(vec!["metrics.>".into()]),
            remove_allow: Some(vec!["alerts.>".into()]),
            ..Default::default()
        }),
        ..UpdateRole::new(acme(), sensor())
    };
    want_pub.allow = vec!["sensors.>".into(), "metrics.>".into()];
    let view = admin.send(&edit).await.unwrap();
    assert_eq!(view.publish, nats_authd::api::role::PermissionInput::of(&want_pub));

    // The case that used to widen: a deny alone on a role with an allow list.
    let (dev1, mut events) = stack.connect_creds(&creds(&admin, "acme", "dev1").await).await;
    dev1.publish("elsewhere.x", "no".into()).await.unwrap();
    dev1.flush().await.unwrap();
    violation(&mut events, "elsewhere.x").await;
}

#[tokio::test]
async fn narrowing_a_role_ends_its_live_callout_connections_and_the_next_login_has_the_new_one() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    setup(&admin).await;
    let options = async_nats::ConnectOptions::new()
        .user_and_password("dev1@acme".into(), PW.into())
        .retry_on_initial_connect();
    let (client, mut events) = stack.login(options).await.unwrap();
    client.publish("sensors.s1", "ok".into()).await.unwrap();
    client.flush().await.unwrap();

    // Widening reaches no one: nothing to take away.
    let wider = UpdateRole {
        publish: Some(PermissionInput {
            allow: Some(vec!["sensors.>".into(), "x.>".into()]),
            ..Default::default()
        }),
        ..UpdateRole::new(acme(), sensor())
    };
    admin.send(&wider).await.unwrap();
    let narrower = UpdateRole {
        publish: Some(PermissionInput {
            deny: Some(vec!["sensors.s1".into()]),
            ..Default::default()
        }),
        ..UpdateRole::new(acme(), sensor())
    };
    let started = std::time::Instant::now();
    admin.send(&narrower).await.unwrap();
    disconnected_within(&mut events, Duration::from_secs(1)).await;
    println!("narrowed role: connection ended {:?} after the update", started.elapsed());

    // async-nats logs in again by itself; the new JWT carries the deny.
    common::eventually(Duration::from_secs(10), "dev1 to log in again", || async {
        client.connection_state() == async_nats::connection::State::Connected
    })
    .await;
    client.publish("sensors.s1", "denied now".into()).await.unwrap();
    client.flush().await.unwrap();
    violation(&mut events, "sensors.s1").await;
}
