//! The login-name rule: a user name is unique across tenant accounts.
//!
//! A client may log in with a bare `name` or with `name@account`. If a bare name could match
//! users of several tenants, a tenant creating `dev1` would change what another tenant's
//! `dev1` login means, or lock it out. So the name of a tenant user *with a password* (the
//! only users a bare name logs in: tokens carry their own id, creds need no name) is unique
//! across tenant accounts: giving a user a password, at create or update, is refused (409,
//! without saying which account) when a user of another tenant with that name has one, and
//! the batch requires that still so when it commits, so two racing changes cannot both win.
//! Users without a password never collide. A bare name therefore means at most one user;
//! `name@account` always works. Names in ADMIN, AUTH and SYS do not count: the callout never
//! logs them in.

use super::{ManageError, Manager, Noun};
use crate::model::{AccountKind, AccountRecord, UserName, UserRecord};
use crate::store::{Batch, Expect, Op, Tree};

fn login_taken(name: &UserName) -> ManageError {
    ManageError::Refused(format!(
        "login name {:?} is taken by a user of another account: user names are unique across \
         tenant accounts, so that a bare login means one user; choose another name",
        name.as_str()
    ))
}

impl Manager {
    /// Refuses a password for user `name` of tenant `account` if a user of that name in
    /// another tenant has one, and adds to `batch` the checks that it is still so at commit.
    ///
    /// # Errors
    /// [`ManageError::Refused`] (409) if the name is taken.
    pub(crate) async fn claim_login(
        &self,
        account: &AccountRecord,
        name: &UserName,
        batch: &mut Batch,
    ) -> Result<(), ManageError> {
        if account.kind != AccountKind::Tenant {
            return Ok(());
        }
        let db = self.authority.db();
        for other in db.list::<AccountRecord>("").await? {
            if other.kind != AccountKind::Tenant || other.name == account.name {
                continue;
            }
            let key = UserRecord::key_of(&other.name, name);
            match db.get::<UserRecord>(&key).await? {
                Some(user) if user.password_hash.is_some() => return Err(login_taken(name)),
                // Unchanged at commit: not given a password meanwhile.
                Some(user) => {
                    batch.require(&user);
                }
                None => {
                    batch.push(Op::Check { tree: Tree::Users, key, expect: Expect::Absent });
                }
            }
        }
        Ok(())
    }

    /// A create's conflict on another account's key (a racing create of the same name there)
    /// becomes the login-name refusal, which names no account.
    pub(crate) fn login_conflict(
        error: ManageError,
        own_key: &str,
        name: &UserName,
    ) -> ManageError {
        match error {
            ManageError::AlreadyExists { what: Noun::User, name: key } if key != own_key => {
                login_taken(name)
            }
            other => other,
        }
    }
}
