//! The login-name rule: a user name is unique across tenant accounts.
//!
//! A client may log in with a bare `name` or with `name@account`. If a bare name could match
//! users of several tenants, a tenant creating `dev1` would change what another tenant's
//! `dev1` login means, or lock it out. So the name of a tenant user *with a password* (the
//! only users a bare name logs in: tokens carry their own id, creds need no name) is unique
//! across tenant accounts. The store keeps one [`LoginRecord`] per such name
//! ([`Tree::Logins`]), created in the batch that gives the user its password and removed in
//! the batch that takes it away or deletes the user: a create that finds the name taken
//! fails the whole batch (409, without saying which account), so two racing changes cannot
//! both win, and a bare-name login reads that one key instead of every account. Users without
//! a password never collide; `name@account` always works. Names in ADMIN, AUTH and SYS do not
//! count: the callout never logs them in.

use super::{ManageError, Manager, Noun};
use crate::model::{AccountKind, AccountRecord, LoginRecord, UserName, UserRecord};
use crate::store::Batch;

fn login_taken(name: &UserName) -> ManageError {
    ManageError::Refused(format!(
        "login name {:?} is taken by a user of another account: user names are unique across \
         tenant accounts, so that a bare login means one user; choose another name",
        name.as_str()
    ))
}

impl Manager {
    /// Claims login `name` for tenant `account` in `batch` (which gives its user a password).
    /// A record naming this account alone is kept (left by an interrupted change), and
    /// required unchanged at commit.
    ///
    /// # Errors
    /// [`ManageError::Refused`] (409) if another tenant holds the name.
    pub(crate) async fn claim_login(
        &self,
        account: &AccountRecord,
        name: &UserName,
        batch: &mut Batch,
    ) -> Result<(), ManageError> {
        if account.kind != AccountKind::Tenant {
            return Ok(());
        }
        match self.authority.db().get::<LoginRecord>(name.as_str()).await? {
            None => {
                batch.create(&LoginRecord {
                    name: name.clone(),
                    accounts: vec![account.name.clone()],
                });
            }
            Some(login) if login.accounts == [account.name.clone()] => {
                batch.require(&login);
            }
            Some(_) => return Err(login_taken(name)),
        }
        Ok(())
    }

    /// Gives up `user`'s claim on its name in `batch` (which takes its password away or
    /// deletes it): only this account's part of the record, and only if the record is still
    /// as read when the batch commits.
    ///
    /// # Errors
    /// Store failures.
    pub(crate) async fn release_login(
        &self,
        account: &AccountRecord,
        user: &UserRecord,
        batch: &mut Batch,
    ) -> Result<(), ManageError> {
        if account.kind != AccountKind::Tenant {
            return Ok(());
        }
        let Some(login) = self.authority.db().get::<LoginRecord>(user.name.as_str()).await? else {
            return Ok(());
        };
        if !login.accounts.contains(&account.name) {
            return Ok(());
        }
        let mut rest = login.clone();
        rest.accounts.retain(|a| a != &account.name);
        if rest.accounts.is_empty() {
            batch.delete_unchanged(&login);
        } else {
            batch.replace(&login, &rest);
        }
        Ok(())
    }

    /// A batch that failed on the login record becomes the login-name refusal, which names no
    /// account.
    pub(crate) fn login_conflict(error: ManageError, name: &UserName) -> ManageError {
        match error {
            ManageError::AlreadyExists { what: Noun::Login, .. } => login_taken(name),
            other => other,
        }
    }
}
