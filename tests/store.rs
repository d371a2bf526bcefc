//! Durability, exclusivity and secrecy of the data dir.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::Stack;
use nats_authd::authority::AuthorityError;
use nats_authd::bootstrap::{self, BootstrapError, Damage, InitOptions, MasterKeyOptions};
use nats_authd::model::{self, AccountRecord, OperatorRecord, UserRecord};
use nats_authd::store::sled::{OpenMode, SledStore};
use nats_authd::store::{Batch, Db, Expect, Op, StoreError, Tree, OPERATOR_KEY};
use nats_authd::vault::{MasterKey, VaultError};
use zeroize::Zeroizing;

const WRITER_ENV: &str = "AUTHD_TEST_WRITER_DIR";

/// Not a test on its own: the child process of `acknowledged_writes_survive_kill_9`, run
/// with `--ignored`. It commits records one by one and prints `acked N` after each commit.
#[tokio::test]
#[ignore = "child process of acknowledged_writes_survive_kill_9"]
async fn writer_child() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let db = Db::new(Arc::new(SledStore::open(dir.as_ref(), OpenMode::CreateIfMissing).unwrap()));
    for i in 0..100_000u32 {
        let mut batch = Batch::new();
        batch.push(Op::Put {
            tree: Tree::Pending,
            key: format!("k{i:06}"),
            value: i.to_be_bytes().to_vec(),
            expect: Expect::Absent,
        });
        db.commit(batch).await.unwrap();
        println!("acked {i}");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last_acked = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("acked ") {
            let n: u32 = n.parse().unwrap();
            last_acked = Some(n);
            if n >= 300 {
                break;
            }
        }
    }
    // SIGKILL: no destructors, no flush on the way out.
    child.kill().unwrap();
    child.wait().unwrap();
    let last_acked = last_acked.expect("the writer acknowledged nothing");

    let db = Db::new(Arc::new(SledStore::open(dir.path(), OpenMode::MustExist).unwrap()));
    for i in 0..=last_acked {
        let value = db.store().get(Tree::Pending, &format!("k{i:06}")).await.unwrap();
        assert_eq!(value, Some(i.to_be_bytes().to_vec()), "acknowledged write {i} was lost");
    }
}

#[tokio::test]
async fn init_twice_keeps_every_key() {
    let mut stack = Stack::init().await;
    let before = stack.authority().db().export().await.unwrap();
    let operator = stack.authority().operator().await.unwrap().identity.public;
    stack.release_store();

    let outcome =
        bootstrap::init(&options(&stack, MasterKeyOptions::default()), model::now()).await.unwrap();
    assert!(!outcome.created);
    assert!(outcome.created_master_key.is_none());
    assert_eq!(outcome.operator_public_key, operator);
    assert_eq!(outcome.authority.db().export().await.unwrap(), before, "re-init changed the store");
}

fn options(stack: &Stack, master_key: MasterKeyOptions) -> InitOptions {
    InitOptions {
        layout: stack.layout.clone(),
        master_key,
        server: stack.settings.clone(),
        operator_name: "test-operator".into(),
        xkey: true,
    }
}

#[tokio::test]
async fn missing_or_wrong_master_key_is_a_clear_error_and_changes_nothing() {
    let mut stack = Stack::init().await;
    let before = stack.authority().db().export().await.unwrap();
    stack.release_store();
    let key_file = stack.layout.default_master_key_file();
    let moved = stack.dir.path().join("master.key.moved");
    std::fs::rename(&key_file, &moved).unwrap();

    let err = bootstrap::init(&options(&stack, MasterKeyOptions::default()), model::now())
        .await
        .unwrap_err();
    assert!(matches!(err, BootstrapError::Vault(VaultError::MissingMasterKey { .. })), "{err}");
    assert!(!key_file.exists(), "a new master key must not be made for an existing store");
    let err =
        bootstrap::open(&stack.layout.data_dir, &MasterKeyOptions::default()).await.unwrap_err();
    assert!(matches!(err, BootstrapError::Vault(VaultError::MissingMasterKey { .. })), "{err}");

    let wrong = MasterKeyOptions { inline: Some(MasterKey::generate().to_text()), file: None };
    let err = bootstrap::init(&options(&stack, wrong.clone()), model::now()).await.unwrap_err();
    assert!(
        matches!(err, BootstrapError::Authority(AuthorityError::Vault(VaultError::WrongMasterKey))),
        "{err}"
    );
    let err = bootstrap::open(&stack.layout.data_dir, &wrong).await.unwrap_err();
    assert!(matches!(
        err,
        BootstrapError::Authority(AuthorityError::Vault(VaultError::WrongMasterKey))
    ));

    let garbage = MasterKeyOptions { inline: Some(Zeroizing::new("not a key".into())), file: None };
    let err = bootstrap::open(&stack.layout.data_dir, &garbage).await.unwrap_err();
    assert!(matches!(err, BootstrapError::Vault(VaultError::InvalidMasterKey { .. })), "{err}");

    std::fs::rename(&moved, &key_file).unwrap();
    let authority =
        bootstrap::open(&stack.layout.data_dir, &MasterKeyOptions::default()).await.unwrap();
    assert_eq!(authority.db().export().await.unwrap(), before);
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = common::files_under(dir)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(&f).unwrap()))
        .collect();
    files.sort();
    files
}

/// Deletes one record from the released store of `stack`, as a crash or a bad tool might.
async fn delete_record(stack: &Stack, tree: Tree, key: &str) {
    let store = SledStore::open(&stack.layout.store_dir(), OpenMode::MustExist).unwrap();
    let mut batch = Batch::new();
    batch.push(Op::Delete { tree, key: key.into(), expect: Expect::Present });
    Db::new(Arc::new(store)).commit(batch).await.unwrap();
}

/// Damages a fresh stack's store with `damage` (which says what damage it made), then checks
/// that `init` refuses with that damage and leaves every file in the data dir byte-identical,
/// and that `serve`'s open reports the same damage rather than "not initialized".
async fn damaged_store_is_refused_untouched<F, Fut>(damage: F)
where
    F: FnOnce(Stack) -> Fut,
    Fut: std::future::Future<Output = (Stack, Damage)>,
{
    let mut stack = Stack::init().await;
    stack.release_store();
    let (stack, expected) = damage(stack).await;
    let data_dir = stack.layout.data_dir.clone();
    let before = snapshot(&data_dir);

    let err = bootstrap::init(&options(&stack, MasterKeyOptions::default()), model::now())
        .await
        .unwrap_err();
    assert!(matches!(&err, BootstrapError::Damaged { damage, .. } if *damage == expected), "{err}");
    assert!(snapshot(&data_dir) == before, "a refused init changed the data dir");

    let err = bootstrap::open(&data_dir, &MasterKeyOptions::default()).await.err().unwrap();
    assert!(matches!(&err, BootstrapError::Damaged { damage, .. } if *damage == expected), "{err}");
}

#[tokio::test]
async fn init_refuses_a_store_whose_db_file_is_gone_and_changes_nothing() {
    damaged_store_is_refused_untouched(|stack| async move {
        std::fs::remove_file(stack.layout.store_dir().join("db")).unwrap();
        (stack, Damage::NoDbFile)
    })
    .await;
}

#[tokio::test]
async fn init_refuses_a_store_without_its_key_check_and_changes_nothing() {
    damaged_store_is_refused_untouched(|stack| async move {
        delete_record(&stack, Tree::Meta, nats_authd::authority::KEY_CHECK).await;
        (stack, Damage::NoKeyCheck)
    })
    .await;
}

#[tokio::test]
async fn init_refuses_a_store_without_its_operator_and_changes_nothing() {
    damaged_store_is_refused_untouched(|stack| async move {
        delete_record(&stack, Tree::Operator, OPERATOR_KEY).await;
        (stack, Damage::NoOperator)
    })
    .await;
}

#[tokio::test]
async fn init_refuses_a_store_without_its_schema_version_and_changes_nothing() {
    damaged_store_is_refused_untouched(|stack| async move {
        delete_record(&stack, Tree::Meta, "schema_version").await;
        (stack, Damage::NoSchema)
    })
    .await;
}

#[tokio::test]
async fn init_refuses_a_data_dir_whose_store_was_removed_while_its_master_key_is_there() {
    damaged_store_is_refused_untouched(|stack| async move {
        std::fs::remove_dir_all(stack.layout.store_dir()).unwrap();
        let key = stack.layout.default_master_key_file();
        (stack, Damage::StoreGone(key))
    })
    .await;
}

#[tokio::test]
async fn init_after_an_interrupted_first_init_creates_the_trust_chain() {
    // What a first init leaves if it dies after making the key: the key and its staging dir.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(data_dir.join("store.new")).unwrap();
    std::fs::write(data_dir.join("store.new").join("conf"), "half").unwrap();
    MasterKey::create_file(&bootstrap::default_master_key_file(&data_dir)).unwrap();
    let options = InitOptions {
        layout: bootstrap::Layout { data_dir: data_dir.clone(), out_dir: dir.path().join("out") },
        master_key: MasterKeyOptions::default(),
        server: nats_authd::server_config::ServerSettings {
            host: "127.0.0.1".into(),
            port: 4222,
            http_port: 8222,
            server_name: "t".into(),
        },
        operator_name: "test-operator".into(),
        xkey: true,
    };
    let outcome = bootstrap::init(&options, model::now()).await.unwrap();
    assert!(outcome.created);
    assert!(outcome.created_master_key.is_none(), "the key of the interrupted init is reused");
    assert!(!data_dir.join("store.new").exists(), "the staging dir is gone");
    drop(outcome);
    let again = bootstrap::open(&data_dir, &MasterKeyOptions::default()).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

#[tokio::test]
async fn serve_on_a_dir_where_init_never_ran_says_not_initialized() {
    let dir = tempfile::tempdir().unwrap();
    let err = bootstrap::open(&dir.path().join("nowhere"), &MasterKeyOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, BootstrapError::Store(StoreError::NotInitialized { .. })), "{err}");
    assert!(!dir.path().join("nowhere").exists(), "open must not create a data dir");
}

/// Every seed the store holds, opened with the master key, as text and as raw key bytes.
async fn every_seed(db: &Db, master: &MasterKey) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut keys = Vec::new();
    let op: OperatorRecord = db.get("operator").await.unwrap().unwrap();
    keys.push(op.identity.clone());
    keys.push(op.signing_key.clone());
    for account in db.list::<AccountRecord>("").await.unwrap() {
        keys.push(account.identity.clone());
        keys.extend(account.signing_keys.iter().cloned());
        keys.extend(account.xkey.iter().cloned());
    }
    for user in db.list::<UserRecord>("").await.unwrap() {
        keys.push(user.identity.clone());
    }
    assert_eq!(keys.len(), 2 + 3 * 2 + 1 + 3, "operator 2, accounts 3x2 + xkey, users 3");
    keys.iter()
        .map(|k| {
            let seed = k.open_seed(master).unwrap();
            let (_, raw) = nkeys::decode_seed(seed.expose()).unwrap();
            let needles = vec![
                seed.expose().as_bytes().to_vec(),
                raw.to_vec(),
                data_encoding::BASE64.encode(&raw).into_bytes(),
                data_encoding::HEXLOWER.encode(&raw).into_bytes(),
            ];
            (k.public.clone(), needles)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_seed_is_readable_in_the_data_dir_or_the_logs() {
    let mut stack = Stack::start().await;
    stack.release_store();
    let data_dir = stack.layout.data_dir.clone();
    let here = stack.dir.path();

    // Run the real binary with verbose logs: init again, then serve until it is up.
    let init = common::nats_authd(here)
        .args(["--log", "trace", "init", "--data-dir"])
        .arg(&data_dir)
        .arg("--out-dir")
        .arg(&stack.layout.out_dir)
        .args(["--port", &stack.settings.port.to_string()])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let log_file = stack.dir.path().join("serve.log");
    let mut serve = common::nats_authd(here)
        .args(["--log", "trace", "serve", "--data-dir"])
        .arg(&data_dir)
        .args(["--nats-url", &stack.url()])
        .stderr(std::fs::File::create(&log_file).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let admin_creds = stack.layout.admin_creds();
    let (url, dir) = (stack.url(), here.to_path_buf());
    let ready = std::time::Duration::from_secs(20);
    tokio::task::spawn_blocking(move || common::await_status(&dir, &url, &admin_creds, ready))
        .await
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serve.wait().unwrap().success());

    let mut logs = init.stdout.clone();
    logs.extend_from_slice(&init.stderr);
    logs.extend_from_slice(&std::fs::read(&log_file).unwrap());

    let authority =
        bootstrap::open(&stack.layout.data_dir, &MasterKeyOptions::default()).await.unwrap();
    let seeds = every_seed(authority.db(), authority.master()).await;
    drop(authority);
    // The search finds seeds where they are meant to be: the admin's, in the creds handed out.
    let admin_creds = std::fs::read(stack.layout.admin_creds()).unwrap();
    let handed_out = seeds.iter().filter(|(_, n)| contains(&admin_creds, &n[0])).count();
    assert_eq!(handed_out, 1, "the admin seed must be found in admin.creds (outside the data dir)");

    let files = common::files_under(&data_dir);
    assert!(files.len() > 3, "expected the store's files, found {files:?}");
    for (public, needles) in &seeds {
        for needle in needles {
            for file in &files {
                let bytes = std::fs::read(file).unwrap();
                assert!(
                    !contains(&bytes, needle),
                    "seed of {public} readable in {}",
                    file.display()
                );
            }
            assert!(!contains(&logs, needle), "seed of {public} in the logs");
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn secrets_on_disk_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let stack = Stack::init().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&stack.layout.default_master_key_file()), 0o600);
    assert_eq!(mode(&stack.layout.admin_creds()), 0o600);
    assert_eq!(mode(&stack.layout.sentinel_creds()), 0o600);
    assert_eq!(mode(&stack.layout.data_dir), 0o700);
    assert_eq!(mode(&stack.layout.store_dir()), 0o700);
}

#[tokio::test]
async fn a_version_1_store_gets_its_login_records_when_opened() {
    let mut stack = Stack::init().await;
    let master = stack.authority().master();
    let acme = AccountRecord::new(
        model::AccountName::new("acme").unwrap(),
        model::AccountKind::Tenant,
        master,
        model::now(),
    );
    let mut dev1 = UserRecord::new(
        acme.name.clone(),
        model::UserName::new("dev1").unwrap(),
        model::UserKind::Member,
        master,
        model::now(),
    );
    dev1.password_hash =
        Some(model::PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into()));
    // What a version-1 build left: the records, no login record, version 1.
    let mut batch = Batch::new();
    batch.put(&acme).put(&dev1).push(Op::Put {
        tree: Tree::Meta,
        key: nats_authd::store::SCHEMA_KEY.into(),
        value: b"1".to_vec(),
        expect: Expect::Any,
    });
    stack.authority().db().commit(batch).await.unwrap();
    stack.release_store();

    let authority =
        bootstrap::open(&stack.layout.data_dir, &MasterKeyOptions::default()).await.unwrap();
    let login: Option<model::LoginRecord> = authority.db().get("dev1").await.unwrap();
    assert_eq!(login.map(|l| l.accounts), Some(vec![acme.name.clone()]));
    let version = authority.db().meta(nats_authd::store::SCHEMA_KEY).await.unwrap();
    assert_eq!(version, Some(nats_authd::store::SCHEMA_VERSION.to_string().into_bytes()));
}
