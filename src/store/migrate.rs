//! Brings a store written by an older build up to [`SCHEMA_VERSION`] when it is opened.
//!
//! Version 2 → 3 only writes the version (see [`SCHEMA_VERSION`]).
//!
//! Version 1 → 2 reconciles [`Tree::Logins`] with the users: one [`LoginRecord`] per name
//! that tenant users with a password have. Version-1 builds kept those names unique across
//! tenants by reading every account; a name several tenants have anyway gets one record naming
//! them all, so it stays taken and a bare-name login finds it ambiguous (`name@account` still
//! works), and a warning names it.
//!
//! Every write is conditional, so the upgrade can run again (after an interruption, or an
//! older build writing the store in between) and run on several instances at once without
//! undoing a newer change: a record that is not what the users call for is removed only if it
//! is still as read; a missing one is created only if still absent and only while the users it
//! comes from are unchanged. Whatever a condition turns away was changed by someone else since
//! the read, through code that keeps the records. The version is written last, compared
//! against the old one.

use std::collections::BTreeMap;

use super::{Batch, Db, Expect, Op, StoreError, Tree, COUNT_PAGE, SCHEMA_KEY, SCHEMA_VERSION};
use crate::model::{AccountKind, AccountName, AccountRecord, LoginRecord, UserName, UserRecord};

/// Records written per commit.
const BATCH: usize = 256;

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The store was at this build's version already.
    Current,
    /// Upgraded from `from`: `written` login records created, `removed` stale ones deleted,
    /// `ambiguous` names that several tenants have.
    Upgraded { from: u32, written: usize, removed: usize, ambiguous: Vec<String> },
}

/// Upgrades `db` to [`SCHEMA_VERSION`] if it is older. A store without a version is left
/// alone: opening it already failed, or it is being initialized.
///
/// # Errors
/// Backend failures, or a version that is not a number.
pub async fn run(db: &Db) -> Result<Migrated, StoreError> {
    let mut tries = 0;
    loop {
        match upgrade(db).await {
            // An older build stamped its own (lower) version meanwhile: upgrade from that.
            Err(StoreError::Conflict { .. }) if tries < 3 => tries += 1,
            done => return done,
        }
    }
}

async fn upgrade(db: &Db) -> Result<Migrated, StoreError> {
    let Some(found) = version(db).await? else { return Ok(Migrated::Current) };
    if found >= SCHEMA_VERSION {
        return Ok(Migrated::Current);
    }
    // 2 → 3 writes only the version: it stops builds of version 2, which neither record the
    // creds they issue nor keep `creds_issued` and `revocations_expire`, from writing the
    // store again (one would hand out creds that a later revocation skips).
    let (written, removed, ambiguous) =
        if found < 2 { logins_from_users(db).await? } else { (0, 0, Vec::new()) };
    let mut stamp = Batch::new();
    stamp.push(Op::Put {
        tree: Tree::Meta,
        key: SCHEMA_KEY.into(),
        value: SCHEMA_VERSION.to_string().into_bytes(),
        expect: Expect::Value(found.to_string().into_bytes()),
    });
    match db.commit(stamp).await {
        Ok(()) => {}
        // Another instance upgraded it at the same time.
        Err(StoreError::Conflict { .. }) if version(db).await? >= Some(SCHEMA_VERSION) => {}
        Err(e) => return Err(e),
    }
    for name in &ambiguous {
        tracing::warn!(
            name,
            "users of several tenant accounts have this name and a password: a bare-name \
             login is refused as ambiguous; they log in as name@account"
        );
    }
    Ok(Migrated::Upgraded { from: found, written, removed, ambiguous })
}

/// Version 1 → 2: the login records the users call for. Returns how many were written and
/// removed, and the names several tenants have.
async fn logins_from_users(db: &Db) -> Result<(usize, usize, Vec<String>), StoreError> {
    let wanted = wanted_logins(db).await?;
    let mut removed = 0;
    let mut stale = Vec::new();
    for (name, login) in db.list::<LoginRecord>("").await?.into_iter().map(|l| (l.name.clone(), l))
    {
        if wanted.get(&name).map(|(w, _)| w) != Some(&login) {
            let mut batch = Batch::new();
            batch.delete_unchanged(&login);
            stale.push(batch);
        }
    }
    for batch in stale {
        removed += commit_unless_changed(db, vec![batch]).await?;
    }
    let mut creates = Vec::new();
    for (login, users) in wanted.values() {
        let mut batch = Batch::new();
        batch.create(login);
        for user in users {
            batch.require(user);
        }
        creates.push(batch);
    }
    let mut written = 0;
    for chunk in creates.chunks(BATCH) {
        written += commit_unless_changed(db, chunk.to_vec()).await?;
    }
    let ambiguous: Vec<String> = wanted
        .values()
        .filter(|(login, _)| login.accounts.len() > 1)
        .map(|(login, _)| login.name.to_string())
        .collect();
    Ok((written, removed, ambiguous))
}

/// Commits `batches` as one if it can, else each alone, skipping those whose conditions
/// failed. Returns how many were committed.
async fn commit_unless_changed(db: &Db, batches: Vec<Batch>) -> Result<usize, StoreError> {
    let mut all = Batch::new();
    for batch in &batches {
        for op in batch.ops() {
            all.push(op.clone());
        }
    }
    match db.commit(all).await {
        Ok(()) => return Ok(batches.len()),
        Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut committed = 0;
    for batch in batches {
        match db.commit(batch).await {
            Ok(()) => committed += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(committed)
}

async fn version(db: &Db) -> Result<Option<u32>, StoreError> {
    let Some(bytes) = db.meta(SCHEMA_KEY).await? else { return Ok(None) };
    super::parse_schema_version(&bytes).map(Some).ok_or_else(|| StoreError::Corrupt {
        tree: Tree::Meta,
        key: SCHEMA_KEY.into(),
        message: "not a number".into(),
    })
}

/// The login record each name calls for, with the users it comes from.
async fn wanted_logins(
    db: &Db,
) -> Result<BTreeMap<UserName, (LoginRecord, Vec<UserRecord>)>, StoreError> {
    let tenants: std::collections::HashSet<AccountName> = db
        .list::<AccountRecord>("")
        .await?
        .into_iter()
        .filter(|a| a.kind == AccountKind::Tenant)
        .map(|a| a.name)
        .collect();
    let mut wanted: BTreeMap<UserName, (LoginRecord, Vec<UserRecord>)> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = db.list_page::<UserRecord>("", after.as_deref(), COUNT_PAGE).await?;
        for (_, user) in &page {
            if user.password_hash.is_some() && tenants.contains(&user.account) {
                let (login, users) = wanted.entry(user.name.clone()).or_insert_with(|| {
                    (LoginRecord { name: user.name.clone(), accounts: Vec::new() }, Vec::new())
                });
                login.accounts.push(user.account.clone());
                users.push(user.clone());
            }
        }
        if page.len() < COUNT_PAGE {
            break;
        }
        after = page.last().map(|(key, _)| key.clone());
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserKind;
    use crate::store::sled::SledStore;
    use crate::vault::MasterKey;
    use std::sync::Arc;

    fn account(name: &str, kind: AccountKind) -> AccountRecord {
        AccountRecord::new(AccountName::new(name).unwrap(), kind, &MasterKey::generate(), 0)
    }

    fn user(account: &str, name: &str, password: bool) -> UserRecord {
        let mut u = UserRecord::new(
            AccountName::new(account).unwrap(),
            UserName::new(name).unwrap(),
            UserKind::Member,
            &MasterKey::generate(),
            0,
        );
        if password {
            u.password_hash = Some(crate::model::PasswordHash::new("$argon2id$x".into()));
        }
        u
    }

    async fn stamp(db: &Db, version: &str) {
        let mut b = Batch::new();
        b.push(Op::Put {
            tree: Tree::Meta,
            key: SCHEMA_KEY.into(),
            value: version.as_bytes().to_vec(),
            expect: Expect::Any,
        });
        db.commit(b).await.unwrap();
    }

    #[tokio::test]
    async fn a_version_1_store_gets_its_login_records_and_the_current_version_once() {
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        let mut b = Batch::new();
        b.put(&account("acme", AccountKind::Tenant))
            .put(&account("beta", AccountKind::Tenant))
            .put(&account("ADMIN", AccountKind::Admin))
            .put(&user("acme", "dev1", true))
            .put(&user("acme", "creds-only", false))
            .put(&user("beta", "dev2", true))
            .put(&user("acme", "twin", true))
            .put(&user("beta", "twin", true))
            .put(&user("ADMIN", "root", true));
        db.commit(b).await.unwrap();
        stamp(&db, "1").await;

        // Left by an earlier, interrupted upgrade and an older build's changes since: one
        // record right, one for a user who has no password now, one naming the wrong account.
        let login = |name: &str, accounts: &[&str]| LoginRecord {
            name: UserName::new(name).unwrap(),
            accounts: accounts.iter().map(|a| AccountName::new(a).unwrap()).collect(),
        };
        let mut b = Batch::new();
        b.put(&login("dev1", &["acme"]))
            .put(&login("creds-only", &["acme"]))
            .put(&login("dev2", &["acme"]));
        db.commit(b).await.unwrap();

        let migrated = run(&db).await.unwrap();
        assert_eq!(
            migrated,
            Migrated::Upgraded { from: 1, written: 2, removed: 2, ambiguous: vec!["twin".into()] }
        );
        let logins: Vec<LoginRecord> = db.list("").await.unwrap();
        assert_eq!(
            logins,
            [login("dev1", &["acme"]), login("dev2", &["beta"]), login("twin", &["acme", "beta"])]
        );
        assert_eq!(version(&db).await.unwrap(), Some(SCHEMA_VERSION));
        assert_eq!(run(&db).await.unwrap(), Migrated::Current, "a second open does nothing");
    }

    #[tokio::test]
    async fn a_version_2_store_only_gets_the_new_version() {
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        let mut b = Batch::new();
        b.put(&account("acme", AccountKind::Tenant)).put(&user("acme", "dev1", true));
        db.commit(b).await.unwrap();
        stamp(&db, "2").await;
        let before = db.export().await.unwrap();
        assert_eq!(
            run(&db).await.unwrap(),
            Migrated::Upgraded { from: 2, written: 0, removed: 0, ambiguous: vec![] }
        );
        let after = db.export().await.unwrap();
        let records = |rows: Vec<(Tree, String, Vec<u8>)>| {
            rows.into_iter().filter(|(tree, _, _)| *tree != Tree::Meta).collect::<Vec<_>>()
        };
        assert_eq!(records(after), records(before), "version 2 → 3 changed a record");
        assert_eq!(version(&db).await.unwrap(), Some(3));
    }

    #[tokio::test]
    async fn a_new_store_is_current_and_an_unversioned_one_is_left_alone() {
        let db = Db::new(Arc::new(SledStore::temporary().unwrap()));
        // `SledStore` stamps a brand-new database with this build's version.
        assert_eq!(version(&db).await.unwrap(), Some(SCHEMA_VERSION));
        assert_eq!(run(&db).await.unwrap(), Migrated::Current);
        let mut b = Batch::new();
        b.push(Op::Delete { tree: Tree::Meta, key: SCHEMA_KEY.into(), expect: Expect::Any });
        db.commit(b).await.unwrap();
        assert_eq!(run(&db).await.unwrap(), Migrated::Current);
        assert_eq!(version(&db).await.unwrap(), None);
    }
}
