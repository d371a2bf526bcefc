//! Brings a store written by an older build up to [`SCHEMA_VERSION`] when it is opened.
//!
//! Version 1 → 2 builds [`Tree::Logins`] from the users: one [`LoginRecord`] per tenant user
//! with a password. Version-1 builds kept those names unique across tenants by reading every
//! account; a name found in several tenants anyway gets no record (a bare-name login then
//! finds nobody, `name@account` still works) and a warning names it. The records are written
//! first and the version last, so an interrupted migration runs again on the next open and
//! writes the same records; several instances opening one shared store at once write the same
//! records too, and the version write compares against the old version, so one wins and the
//! others see it done.

use std::collections::BTreeMap;

use super::{Batch, Db, Expect, Op, StoreError, Tree, COUNT_PAGE, SCHEMA_KEY, SCHEMA_VERSION};
use crate::model::{AccountKind, AccountName, AccountRecord, LoginRecord, UserName, UserRecord};

/// Login records written per commit.
const BATCH: usize = 256;

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The store was at this build's version already.
    Current,
    /// Upgraded from `from`: `logins` login records written, `ambiguous` names left out.
    Upgraded { from: u32, logins: usize, ambiguous: Vec<String> },
}

/// Upgrades `db` to [`SCHEMA_VERSION`] if it is older. A store without a version is left
/// alone: opening it already failed, or it is being initialized.
///
/// # Errors
/// Backend failures, or a version that is not a number.
pub async fn run(db: &Db) -> Result<Migrated, StoreError> {
    let Some(found) = version(db).await? else { return Ok(Migrated::Current) };
    if found >= SCHEMA_VERSION {
        return Ok(Migrated::Current);
    }
    let (logins, ambiguous) = logins(db).await?;
    let written = logins.len();
    for chunk in logins.chunks(BATCH) {
        let mut batch = Batch::new();
        for login in chunk {
            batch.put(login);
        }
        db.commit(batch).await?;
    }
    let mut stamp = Batch::new();
    stamp.push(Op::Put {
        tree: Tree::Meta,
        key: SCHEMA_KEY.into(),
        value: SCHEMA_VERSION.to_string().into_bytes(),
        expect: Expect::Value(found.to_string().into_bytes()),
    });
    match db.commit(stamp).await {
        Ok(()) => {}
        // Another instance stamped it first, after writing the same records.
        Err(StoreError::Conflict { .. }) if version(db).await? >= Some(SCHEMA_VERSION) => {}
        Err(e) => return Err(e),
    }
    for name in &ambiguous {
        tracing::warn!(
            name,
            "users of several tenant accounts have this name and a password: a bare-name \
             login finds none of them; they log in as name@account"
        );
    }
    Ok(Migrated::Upgraded { from: found, logins: written, ambiguous })
}

async fn version(db: &Db) -> Result<Option<u32>, StoreError> {
    let Some(bytes) = db.meta(SCHEMA_KEY).await? else { return Ok(None) };
    std::str::from_utf8(&bytes).ok().and_then(|s| s.parse().ok()).map(Some).ok_or_else(|| {
        StoreError::Corrupt {
            tree: Tree::Meta,
            key: SCHEMA_KEY.into(),
            message: "not a number".into(),
        }
    })
}

/// The login records the users call for, and the names several tenants claim.
async fn logins(db: &Db) -> Result<(Vec<LoginRecord>, Vec<String>), StoreError> {
    let tenants: std::collections::HashSet<AccountName> = db
        .list::<AccountRecord>("")
        .await?
        .into_iter()
        .filter(|a| a.kind == AccountKind::Tenant)
        .map(|a| a.name)
        .collect();
    let mut claims: BTreeMap<UserName, Vec<AccountName>> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = db.list_page::<UserRecord>("", after.as_deref(), COUNT_PAGE).await?;
        for (_, user) in &page {
            if user.password_hash.is_some() && tenants.contains(&user.account) {
                claims.entry(user.name.clone()).or_default().push(user.account.clone());
            }
        }
        if page.len() < COUNT_PAGE {
            break;
        }
        after = page.last().map(|(key, _)| key.clone());
    }
    let mut records = Vec::with_capacity(claims.len());
    let mut ambiguous = Vec::new();
    for (name, mut accounts) in claims {
        if accounts.len() == 1 {
            records.push(LoginRecord { name, account: accounts.remove(0) });
        } else {
            ambiguous.push(name.to_string());
        }
    }
    Ok((records, ambiguous))
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
    async fn a_version_1_store_gets_its_login_records_and_version_2_once() {
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

        let migrated = run(&db).await.unwrap();
        assert_eq!(
            migrated,
            Migrated::Upgraded { from: 1, logins: 2, ambiguous: vec!["twin".into()] }
        );
        let logins: Vec<LoginRecord> = db.list("").await.unwrap();
        let pairs: Vec<(&str, &str)> =
            logins.iter().map(|l| (l.name.as_str(), l.account.as_str())).collect();
        assert_eq!(pairs, [("dev1", "acme"), ("dev2", "beta")]);
        assert_eq!(version(&db).await.unwrap(), Some(SCHEMA_VERSION));
        assert_eq!(run(&db).await.unwrap(), Migrated::Current, "a second open does nothing");
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
