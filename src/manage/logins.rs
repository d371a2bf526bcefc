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
use crate::store::{Batch, Expect};

fn login_taken(name: &UserName) -> ManageError {
    ManageError::Refused(format!(
        "login name {:?} is taken by a user of another account: user names are unique across \
         tenant accounts, so that a bare login means one user; choose another name",
        name.as_str()
    ))
}

impl Manager {
    /// Claims login `name` for tenant `account` in `batch` (which gives its user a password):
    /// the batch fails if another tenant's user holds the name.
    pub(crate) fn claim_login(account: &AccountRecord, name: &UserName, batch: &mut Batch) {
        if account.kind == AccountKind::Tenant {
            batch.create(&LoginRecord { name: name.clone(), account: account.name.clone() });
        }
    }

    /// Gives up `user`'s login name in `batch` (which takes its password away or deletes it).
    /// Unconditional: a store upgraded with this name left out as ambiguous has no record.
    pub(crate) fn release_login(account: &AccountRecord, user: &UserRecord, batch: &mut Batch) {
        if account.kind == AccountKind::Tenant && user.password_hash.is_some() {
            batch.delete_with::<LoginRecord>(user.name.as_str(), Expect::Any);
        }
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
