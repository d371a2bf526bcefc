//! Regressions from an independent attack-and-fault run, and the error seam's guarantees.
//! Each of these failed on the code before its fix.

mod common;

use std::time::Duration;

use common::{creds, drained, Stack};
use futures::future::join_all;
use nats_authd::api::account::{CreateAccount, UpdateAccount};
use nats_authd::api::role::{CreateRole, RoleRef};
use nats_authd::api::user::{CreateUser, Password, UpdateUser, UserRef};
use nats_authd::client::AdminClient;
use nats_authd::manage::{ManageError, Manager, Noun};
use nats_authd::model::{
    now, AccountName, RoleName, RoleRecord, UserName, UserRecord, REVOCATION_SLACK_SECS,
};
use nats_authd::service::reply::WireError;
use serde_json::{json, Value};

fn account(name: &str) -> AccountName {
    AccountName::new(name).unwrap()
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

fn role(name: &str) -> RoleName {
    RoleName::new(name).unwrap()
}

fn create_user(
    acct: &str,
    name: &str,
    role_name: Option<&str>,
    password: Option<&str>,
) -> CreateUser {
    CreateUser {
        role: role_name.map(String::from),
        password: password.map(Password::new),
        ..CreateUser::new(account(acct), user(name))
    }
}

fn user_ref(acct: &str, name: &str) -> UserRef {
    UserRef::new(account(acct), user(name))
}

async fn tenant(manager: &Manager, name: &str) {
    manager.create_account(CreateAccount::new(account(name)), now()).await.unwrap();
}

#[tokio::test]
async fn an_account_changed_during_a_user_create_is_reported_as_changed_not_as_a_duplicate() {
    let stack = Stack::init().await;
    let manager = stack.manager();
    tenant(&manager, "acme").await;
    let mut changed = 0;
    for i in 0..20 {
        // The create reads the account, then hashes the password (~20 ms) before it writes;
        // the update lands in between.
        let create = manager.create_user(
            create_user("acme", &format!("u{i}"), None, Some("hunter2hunter2")),
            now(),
        );
        let update = async {
            tokio::time::sleep(Duration::from_millis(3)).await;
            let update = UpdateAccount {
                description: Some(format!("v{i}")),
                ..UpdateAccount::new(account("acme"))
            };
            manager.update_account(update, now()).await.unwrap();
        };
        let (created, ()) = tokio::join!(create, update);
        match created {
            Ok(_) => {}
            Err(e @ ManageError::Changed { what: Noun::Account, .. }) => {
                let wire = WireError::of(&e);
                assert_eq!((wire.code, wire.kind), (409, "changed"));
                assert!(wire.message.contains("changed concurrently"), "{}", wire.message);
                changed += 1;
            }
            Err(other) => panic!("a concurrent account change was reported as {other:?}"),
        }
    }
    assert!(changed > 0, "the race never happened: the test proves nothing");
}

#[tokio::test]
async fn a_role_deleted_while_it_is_assigned_never_leaves_a_dangling_name() {
    let stack = Stack::init().await;
    let manager = stack.manager();
    tenant(&manager, "acme").await;
    let db = stack.authority().db().clone();
    for i in 0..25 {
        let (r, u) = (format!("r{i}"), format!("u{i}"));
        manager.create_role(CreateRole::new(account("acme"), role(&r)), now()).await.unwrap();
        // Half with a password, so the create holds the role it read for a hash's time.
        let password = (i % 2 == 0).then_some("hunter2hunter2");
        let (_, _) = tokio::join!(
            manager.create_user(create_user("acme", &u, Some(&r), password), now()),
            manager.delete_role(RoleRef::new(account("acme"), role(&r)), now()),
        );
        let user = db.get::<UserRecord>(&format!("acme/{u}")).await.unwrap();
        let held = db.get::<RoleRecord>(&format!("acme/{r}")).await.unwrap();
        if let Some(user) = user {
            assert!(held.is_some(), "user {u} names role {r}, which is gone");
            assert_eq!(user.role.as_ref().map(|r| r.as_str()), Some(r.as_str()));
        }
        assert!(held.is_none_or(|r| !r.deleting), "a failed delete left its mark");

        // The same race for the account's default role.
        let d = format!("d{i}");
        manager.create_role(CreateRole::new(account("acme"), role(&d)), now()).await.unwrap();
        let (_, _) = tokio::join!(
            manager.update_account(
                UpdateAccount {
                    default_role: Some(d.clone()),
                    ..UpdateAccount::new(account("acme"))
                },
                now(),
            ),
            manager.delete_role(RoleRef::new(account("acme"), role(&d)), now()),
        );
        let account = manager
            .authority()
            .account(&nats_authd::model::AccountName::new("acme").unwrap())
            .await
            .unwrap();
        if account.default_role.as_ref().is_some_and(|r| r.as_str() == d) {
            assert!(
                db.get::<RoleRecord>(&format!("acme/{d}")).await.unwrap().is_some(),
                "the default names {d}, which is gone"
            );
        }
    }
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_deleted_or_deactivated() {
    let stack = Stack::init().await;
    let manager = stack.manager();
    let refused = |r: Result<_, ManageError>| matches!(r, Err(ManageError::Refused(_)));
    assert!(refused(manager.delete_user(user_ref("admin", "admin"), now()).await));
    assert!(refused(
        manager
            .update_user(
                UpdateUser {
                    active: Some(false),
                    ..UpdateUser::new(account("admin"), user("admin"))
                },
                now()
            )
            .await
    ));
    manager.create_user(create_user("admin", "second", None, None), now()).await.unwrap();
    manager.delete_user(user_ref("admin", "admin"), now()).await.unwrap();
    assert!(refused(manager.delete_user(user_ref("admin", "second"), now()).await));

    // Two admins deleted at once: one of the deletes must fail.
    manager.create_user(create_user("admin", "third", None, None), now()).await.unwrap();
    let _ = tokio::join!(
        manager.delete_user(user_ref("admin", "second"), now()),
        manager.delete_user(user_ref("admin", "third"), now()),
    );
    let admins = stack.authority().db().list::<UserRecord>("admin/").await.unwrap();
    assert!(admins.iter().any(|u| u.active), "no active admin is left: {admins:?}");
}

#[tokio::test]
async fn init_still_runs_after_the_first_admin_was_deleted() {
    let mut stack = Stack::init().await;
    let manager = stack.manager();
    manager.create_user(create_user("admin", "second", None, None), now()).await.unwrap();
    manager.delete_user(user_ref("admin", "admin"), now()).await.unwrap();
    drop(manager);
    stack.reinit().await.expect("init (and so up) must not need the first admin");
}

#[tokio::test]
async fn init_writes_no_fresh_creds_for_a_deactivated_first_admin() {
    let mut stack = Stack::init().await;
    let manager = stack.manager();
    manager.create_user(create_user("admin", "second", None, None), now()).await.unwrap();
    let deactivate =
        UpdateUser { active: Some(false), ..UpdateUser::new(account("admin"), user("admin")) };
    manager.update_user(deactivate, now()).await.unwrap();
    drop(manager);
    let path = stack.layout.admin_creds();
    let before = std::fs::read_to_string(&path).unwrap();
    // A JWT signed after the revocation would not be covered by it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stack.reinit().await.expect("init must not need an active first admin");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "fresh creds were written");
}

#[tokio::test]
async fn an_account_delete_during_a_burst_of_password_user_creates_is_answered() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    for name in ["acme", "doomed"] {
        admin.call("account.create", &json!({ "name": name })).await.unwrap();
    }
    drained(&admin).await;
    // Plain requests, no retries: what `nats req` does.
    let nats = admin.nats().clone();
    let creates = (0..80).map(|i| {
        let nats = nats.clone();
        async move {
            let body =
                json!({"account": "acme", "name": format!("u{i}"), "password": "hunter2hunter2"});
            let request = async_nats::Request::new()
                .payload(serde_json::to_vec(&body).unwrap().into())
                .timeout(Some(Duration::from_secs(15)));
            nats.send_request("authd.user.create", request).await.map(|_| ())
        }
    });
    let delete = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let request = async_nats::Request::new()
            .payload(serde_json::to_vec(&json!({ "name": "doomed" })).unwrap().into())
            .timeout(Some(Duration::from_secs(8)));
        nats.send_request("authd.account.delete", request).await
    };
    let (created, deleted) = tokio::join!(join_all(creates), delete);
    let reply = deleted.expect("account.delete got no reply during the burst");
    assert!(reply.headers.is_none_or(|h| h.get("Nats-Service-Error-Code").is_none()));
    assert!(created.iter().all(Result::is_ok), "a user create got no reply");
}

#[tokio::test]
async fn a_login_right_after_an_acknowledged_account_create_succeeds() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    // No waiting for pushes between the calls: an acknowledged create is usable at once.
    let created = admin.call("account.create", &json!({ "name": "fresh" })).await.unwrap();
    admin
        .call(
            "role.create",
            &json!({"account": "fresh", "name": "all", "publish": {"allow": [">"]},
                    "subscribe": {"allow": [">"]}}),
        )
        .await
        .unwrap();
    admin
        .call(
            "user.create",
            &json!({"account": "fresh", "name": "dev1", "role": "all", "password": "hunter2hunter2"}),
        )
        .await
        .unwrap();
    let options = async_nats::ConnectOptions::new()
        .user_and_password("dev1@fresh".into(), "hunter2hunter2".into());
    let (client, _) = stack.login(options).await.expect("login right after the create");
    assert_eq!(common::account_of(&client).await, created["public_key"].as_str().unwrap());
}

/// acme with user dev1 (pushed), and creds fetched for dev1.
async fn acme_dev1_with_creds(admin: &AdminClient) -> String {
    admin.call("account.create", &json!({ "name": "acme" })).await.unwrap();
    admin.call("user.create", &json!({ "account": "acme", "name": "dev1" })).await.unwrap();
    drained(admin).await;
    creds(admin, "acme", "dev1").await
}

/// Deactivates or reactivates acme's dev1 and waits for the push.
async fn set_dev1_active(admin: &AdminClient, active: bool) {
    let update = json!({ "account": "acme", "name": "dev1", "active": active });
    admin.call("user.update", &update).await.unwrap();
    drained(admin).await;
}

#[tokio::test]
async fn reactivating_a_user_does_not_revive_creds_issued_before_its_deactivation() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    let old = acme_dev1_with_creds(&admin).await;
    for active in [false, true] {
        set_dev1_active(&admin, active).await;
    }
    let refused =
        async_nats::ConnectOptions::with_credentials(&old).unwrap().connect(stack.url()).await;
    assert!(refused.is_err(), "creds issued before the deactivation work again");
    let (fresh, _) = stack.connect_creds(&creds(&admin, "acme", "dev1").await).await;
    fresh.flush().await.unwrap();
}

#[tokio::test]
async fn a_revoked_key_stays_revoked_for_creds_signed_after_the_revocation() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    acme_dev1_with_creds(&admin).await;
    let stale = stack.authority().user(&account("acme"), &user("dev1")).await.unwrap();
    set_dev1_active(&admin, false).await;
    // Signed from a copy of the records that missed the deactivation (a JetStream
    // deployment's local seed), an hour after it.
    let acme = stack.authority().account(&account("acme")).await.unwrap();
    let late = stack.authority().creds_of(&acme, &stale, now() + 3600).await.unwrap();
    let refused =
        async_nats::ConnectOptions::with_credentials(&late).unwrap().connect(stack.url()).await;
    assert!(refused.is_err(), "creds signed after the revocation work");
}

#[tokio::test]
async fn a_refused_request_counts_as_an_error_in_srv_stats_and_keeps_its_body() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    let nats = admin.nats().clone();
    let reply = nats.request("authd.account.get", r#"{"name":"ghost"}"#.into()).await.unwrap();
    let body: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["error"]["code"], 404);
    assert_eq!(body["error"]["kind"], "not_found");
    let stats = nats.request("$SRV.STATS.nats-authd", "".into()).await.unwrap();
    let stats: Value = serde_json::from_slice(&stats.payload).unwrap();
    let endpoint = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subject"] == "authd.account.get")
        .unwrap_or_else(|| panic!("no account.get in {stats}"));
    assert_eq!(endpoint["num_errors"], 1, "{endpoint}");
    assert_eq!(endpoint["num_requests"], 1, "{endpoint}");
    let status = admin.send(&nats_authd::api::ops::GetStatus {}).await.unwrap();
    assert_eq!(status.errors.get("account.get"), Some(&1), "{:?}", status.errors);
}

#[tokio::test]
async fn an_admin_gets_a_system_account_user_for_the_servers_own_requests() {
    let stack = Stack::start().await;
    let _service = stack.serve();
    let admin = stack.admin().await;
    let creds = admin.send(&nats_authd::api::ops::SysCreds::default()).await.unwrap();
    assert_eq!(creds.account, "sys");
    let again = admin.send(&nats_authd::api::ops::SysCreds::default()).await.unwrap();
    assert_eq!(again.public_key, creds.public_key, "the same user, not a new one each time");
    let (sys, _) = stack.connect_creds(&creds.creds).await;
    let sys_key = stack.authority().operator().await.unwrap().system_account;
    assert_eq!(common::account_of(&sys).await, sys_key);
    // What `nats server ping` sends.
    let pong = sys.request("$SYS.REQ.SERVER.PING", "".into()).await.unwrap();
    let pong: Value = serde_json::from_slice(&pong.payload).unwrap();
    assert!(pong["server"]["name"].is_string(), "{pong}");
}

#[tokio::test]
async fn no_token_lands_in_an_account_being_deleted_and_a_second_delete_finishes_it() {
    use nats_authd::api::account::DeleteAccount;
    use nats_authd::api::token::CreateToken;
    use nats_authd::model::{AccountRecord, TokenRecord};
    use nats_authd::store::Batch;

    let stack = Stack::init().await;
    let manager = stack.manager();
    tenant(&manager, "acme").await;
    manager.create_user(create_user("acme", "u1", None, None), now()).await.unwrap();
    let token = |user: &str| CreateToken {
        account: account("acme"),
        user: self::user(user),
        description: None,
    };
    manager.create_token(token("u1"), now()).await.unwrap();
    // A cascading delete cut short after its mark (it lists the tokens once, then deletes
    // users batch by batch).
    let db = stack.authority().db().clone();
    let current: AccountRecord = db.get("acme").await.unwrap().unwrap();
    let mut marked = current.clone();
    marked.deleting = true;
    marked.active = false;
    let mut batch = Batch::new();
    batch.replace(&current, &marked);
    db.commit(batch).await.unwrap();

    let refused = manager.create_token(token("u1"), now()).await;
    assert!(
        matches!(&refused, Err(ManageError::Refused(m)) if m.contains("being deleted")),
        "{refused:?}"
    );
    let deleted = manager
        .delete_account(DeleteAccount { name: account("acme"), cascade: true }, now())
        .await
        .unwrap();
    assert_eq!(deleted.users, 1);
    assert!(db.list::<TokenRecord>("").await.unwrap().is_empty(), "a token outlived its account");
    assert!(db.get::<AccountRecord>("acme").await.unwrap().is_none());
}

#[tokio::test]
async fn revocations_stay_only_as_long_as_creds_they_cover_may_be_valid() {
    let stack = Stack::init().await;
    let manager = stack.manager();
    tenant(&manager, "acme").await;
    let t0 = now();
    for (name, ttl) in [("quiet", None), ("lasting", None), ("brief", Some(60)), ("other", None)] {
        let create = CreateUser { jwt_ttl_secs: ttl, ..create_user("acme", name, None, None) };
        manager.create_user(create, t0).await.unwrap();
    }
    for name in ["lasting", "brief"] {
        manager.user_creds(user_ref("acme", name), t0).await.unwrap();
    }
    let acme = || async { stack.authority().account(&account("acme")).await.unwrap() };
    let deactivate = |name: &str, at| {
        let update =
            UpdateUser { active: Some(false), ..UpdateUser::new(account("acme"), user(name)) };
        manager.update_user(update, at)
    };

    // No creds were ever issued for its key: the account's JWT does not change.
    let before = acme().await;
    deactivate("quiet", t0).await.unwrap();
    manager.delete_user(user_ref("acme", "quiet"), t0).await.unwrap();
    assert_eq!(acme().await, before, "a key without creds was revoked");

    manager.delete_user(user_ref("acme", "lasting"), t0).await.unwrap();
    deactivate("brief", t0).await.unwrap();
    let revoked = acme().await.revocations;
    assert_eq!(revoked.len(), 2, "{revoked:?}");

    // Once brief's creds (60 s) and the slack are past, the next revocation drops its entry;
    // creds without expiry keep theirs.
    let later = t0 + 60 + REVOCATION_SLACK_SECS + 1;
    manager.user_creds(user_ref("acme", "other"), t0).await.unwrap();
    manager.regenerate_user(user_ref("acme", "other"), later).await.unwrap();
    let revoked = acme().await.revocations;
    let brief = stack.authority().user(&account("acme"), &user("brief")).await.unwrap();
    assert!(!revoked.contains_key(&brief.identity.public), "brief's stayed");
    assert_eq!(revoked.len(), 2, "lasting's and other's old key: {revoked:?}");

    // The regenerate's creds were noted for the new key: deactivating revokes it.
    let other = stack.authority().user(&account("acme"), &user("other")).await.unwrap();
    deactivate("other", later).await.unwrap();
    assert!(acme().await.revocations.contains_key(&other.identity.public), "new key not revoked");

    // Creds are not signed for a user read before it was deactivated, even with nothing to
    // note (its creds were lasting already).
    let create = create_user("acme", "stale", None, None);
    manager.create_user(create, later).await.unwrap();
    manager.user_creds(user_ref("acme", "stale"), later).await.unwrap();
    let stale = stack.authority().user(&account("acme"), &user("stale")).await.unwrap();
    deactivate("stale", later).await.unwrap();
    let signed = stack.authority().issue_creds(&acme().await, &stale, later).await;
    assert!(signed.is_err(), "creds signed from a stale record");
}
