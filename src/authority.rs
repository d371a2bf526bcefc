//! The store plus the master key: the one place that reads records to sign tokens.

use std::sync::Arc;

use crate::model::{
    AccountKind, AccountName, AccountRecord, OperatorRecord, RoleRecord, UnixTime, UserKind,
    UserName, UserRecord,
};
use crate::policy;
use crate::store::migrate::{self, Migrated};
use crate::store::{Batch, Db, StoreError, OPERATOR_KEY, SCHEMA_VERSION};
use crate::trust::{self, CalloutSettings, TrustError};
use crate::vault::{MasterKey, VaultError};

/// Meta key of a value sealed at init; opening it proves the master key is the right one.
pub const KEY_CHECK: &str = "master_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"nats-authd master key check v1";

use crate::names::AUTH_ACCOUNT;

/// Why the authority could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The store has no operator: `init` never finished.
    #[error("the store has no operator; run `nats-authd init`")]
    NotInitialized,
    /// No such account.
    #[error("account {0:?} not found")]
    NoSuchAccount(String),
    /// No such user.
    #[error("user {0:?} not found")]
    NoSuchUser(String),
    /// The user or its account is deactivated: no creds for it.
    #[error("user {0:?} or its account is deactivated")]
    Inactive(String),
}

/// AUTH's `allowed_accounts`: any account, so AUTH's JWT stays the same as tenants come and go.
///
/// An explicit list of tenants would be the server's own guard against a callout answer that
/// places a user in SYS, AUTH or ADMIN; but every tenant created or deleted would then rewrite
/// AUTH's JWT, and nats-server drops the replies in flight from an account's exports whenever
/// its JWT is updated (the management API is exported from AUTH), the list grows by a
/// 56-character key per tenant (~560 KB at 10,000), and a login right after an account
/// create would be refused until AUTH's push landed. The guard therefore lives in the
/// callout: it admits password and token logins into active tenant accounts only.
pub const ANY_ACCOUNT: &str = "*";

/// Signs tokens from stored records; cheap to clone.
#[derive(Clone)]
pub struct Authority {
    db: Db,
    master: Arc<MasterKey>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// The sealed value that [`Authority::open`] checks the master key against.
pub fn key_check_value(master: &MasterKey) -> Vec<u8> {
    serde_json::to_vec(&master.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK.as_bytes()))
        .expect("sealed values serialize")
}

/// Brings a store of an older build up to this build's schema (after the key check: only the
/// store's owner changes it).
async fn upgrade(db: &Db) -> Result<(), StoreError> {
    if let Migrated::Upgraded { from, written, removed, ambiguous } = migrate::run(db).await? {
        tracing::info!(
            from,
            to = SCHEMA_VERSION,
            written,
            removed,
            ambiguous = ambiguous.len(),
            "upgraded the store's schema"
        );
    }
    Ok(())
}

impl Authority {
    /// Opens an initialized store with `master`.
    ///
    /// # Errors
    /// [`AuthorityError::NotInitialized`] if `init` never completed,
    /// [`VaultError::WrongMasterKey`] if `master` is not the key the store was made with.
    pub async fn open(db: Db, master: MasterKey) -> Result<Self, AuthorityError> {
        let Some(check) = db.meta(KEY_CHECK).await? else {
            return Err(AuthorityError::NotInitialized);
        };
        let sealed = serde_json::from_slice(&check).map_err(|_| VaultError::Malformed)?;
        master.open(&sealed, KEY_CHECK.as_bytes()).map_err(|_| VaultError::WrongMasterKey)?;
        upgrade(&db).await?;
        Ok(Authority { db, master: Arc::new(master) })
    }

    /// The same master key over another store (the shared JetStream one), checked like
    /// [`Authority::open`] checks it.
    ///
    /// # Errors
    /// As [`Authority::open`].
    pub async fn with_db(&self, db: Db) -> Result<Self, AuthorityError> {
        let Some(check) = db.meta(KEY_CHECK).await? else {
            return Err(AuthorityError::NotInitialized);
        };
        let sealed = serde_json::from_slice(&check).map_err(|_| VaultError::Malformed)?;
        self.master.open(&sealed, KEY_CHECK.as_bytes()).map_err(|_| VaultError::WrongMasterKey)?;
        upgrade(&db).await?;
        Ok(Authority { db, master: Arc::clone(&self.master) })
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The operator record.
    ///
    /// # Errors
    /// [`AuthorityError::NotInitialized`] if there is none.
    pub async fn operator(&self) -> Result<OperatorRecord, AuthorityError> {
        self.db.get(OPERATOR_KEY).await?.ok_or(AuthorityError::NotInitialized)
    }

    /// An account by name.
    ///
    /// # Errors
    /// [`AuthorityError::NoSuchAccount`] if absent.
    pub async fn account(&self, name: &AccountName) -> Result<AccountRecord, AuthorityError> {
        self.db
            .get(name.as_str())
            .await?
            .ok_or_else(|| AuthorityError::NoSuchAccount(name.to_string()))
    }

    /// A user by account and name.
    ///
    /// # Errors
    /// [`AuthorityError::NoSuchUser`] if absent.
    pub async fn user(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<UserRecord, AuthorityError> {
        let key = UserRecord::key_of(account, name);
        self.db.get(&key).await?.ok_or(AuthorityError::NoSuchUser(key))
    }

    /// The callout settings of the AUTH account as the records stand now.
    ///
    /// # Errors
    /// Store failures.
    pub async fn callout_settings(&self) -> Result<CalloutSettings, AuthorityError> {
        let auth_users = self
            .db
            .list::<UserRecord>(&format!("{AUTH_ACCOUNT}/"))
            .await?
            .into_iter()
            .filter(|u| u.kind == UserKind::Service && u.active)
            .map(|u| u.identity.public)
            .collect();
        Ok(CalloutSettings { auth_users, allowed_accounts: vec![ANY_ACCOUNT.to_string()] })
    }

    /// The current JWT of `account`, signed now.
    ///
    /// # Errors
    /// Store or key failures.
    pub async fn account_jwt(
        &self,
        account: &AccountRecord,
        now: UnixTime,
    ) -> Result<String, AuthorityError> {
        let op = self.operator().await?;
        let callout = match account.kind {
            AccountKind::Auth => Some(self.callout_settings().await?),
            _ => None,
        };
        Ok(trust::account_jwt(&op, account, callout.as_ref(), &self.master, now)?)
    }

    /// The operator JWT, signed now.
    ///
    /// # Errors
    /// Store or key failures.
    pub async fn operator_jwt(&self, now: UnixTime) -> Result<String, AuthorityError> {
        Ok(trust::operator_jwt(&self.operator().await?, &self.master, now)?)
    }

    /// A creds file for a stored active user, with a JWT signed now, recorded as issued in the
    /// user's record (so that revoking its key lasts as long as the creds may).
    ///
    /// # Errors
    /// [`AuthorityError::NoSuchUser`], [`AuthorityError::NoSuchAccount`],
    /// [`AuthorityError::Inactive`], store or key failures, a conflict if the user changed
    /// meanwhile.
    pub async fn user_creds(
        &self,
        account: &AccountName,
        name: &UserName,
        now: UnixTime,
    ) -> Result<String, AuthorityError> {
        let account = self.account(account).await?;
        let user = self.user(&account.name, name).await?;
        if !(account.active && user.active) {
            return Err(AuthorityError::Inactive(name.to_string()));
        }
        self.issue_creds(&account, &user, now).await
    }

    /// Creds for loaded records (as [`Authority::creds_of`]), returned once the user's record
    /// says they were issued.
    ///
    /// # Errors
    /// Store or key failures, a conflict if the user changed since it was read.
    pub async fn issue_creds(
        &self,
        account: &AccountRecord,
        user: &UserRecord,
        now: UnixTime,
    ) -> Result<String, AuthorityError> {
        let creds = self.creds_of(account, user, now).await?;
        let mut issued = user.clone();
        let mut batch = Batch::new();
        // Checked even when nothing is to be written: creds are not handed out for a user
        // deactivated, deleted or given a new key since it was read.
        if issued.note_creds(now) {
            batch.replace(user, &issued);
        } else {
            batch.require(user);
        }
        self.db.commit(batch).await?;
        Ok(creds)
    }

    /// The role a user holds, if any (and if it still exists).
    ///
    /// # Errors
    /// Store failures.
    pub async fn role_of(
        &self,
        account: &AccountRecord,
        user: &UserRecord,
    ) -> Result<Option<RoleRecord>, AuthorityError> {
        match &user.role {
            Some(role) => {
                Ok(self.db.get::<RoleRecord>(&RoleRecord::key_of(&account.name, role)).await?)
            }
            None => Ok(None),
        }
    }

    /// A creds file for loaded records: the user's own key, its role's permissions with
    /// templates resolved, a JWT signed now.
    ///
    /// # Errors
    /// Store or key failures.
    pub async fn creds_of(
        &self,
        account: &AccountRecord,
        user: &UserRecord,
        now: UnixTime,
    ) -> Result<String, AuthorityError> {
        let role = self.role_of(account, user).await?;
        let permissions = policy::connection_permissions(
            user,
            role.as_ref(),
            account.name.as_str(),
            &user.identity.public,
        );
        Ok(trust::user_creds(account, user, permissions, &self.master, now)?)
    }
}
