//! Users of tenant (and admin) accounts: create, read, update, delete, new keys, creds.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{check_len, ManageError, Manager, Noun, PageSpec, Revoked, MAX_DESCRIPTION_LEN};
use crate::api::user::{CreateUser, CredsView, UpdateUser, UserListRef, UserRef, UserView};
use crate::api::Page;
use crate::model::{
    AccountKind, AccountName, AccountRecord, CredsIssued, PasswordHash, RoleName, RoleRecord,
    UnixTime, UserKind, UserName, UserRecord,
};
use crate::names::{SYS_ACCOUNT, SYS_OPERATOR_USER};
use crate::password::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::store::Batch;

/// Longest JWT lifetime accepted for a user (a year); `None` means no expiry.
pub const MAX_JWT_TTL_SECS: i64 = 366 * 24 * 3600;

fn check_password(password: &str) -> Result<(), ManageError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(ManageError::Invalid(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// Most tags on one user.
pub const MAX_TAGS: usize = 32;

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ManageError> {
    if tags.len() > MAX_TAGS {
        return Err(ManageError::Invalid(format!("at most {MAX_TAGS} tags")));
    }
    for (key, value) in tags {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if !ok(key) || !ok(value) {
            return Err(ManageError::Invalid(format!(
                "tag {key:?} must have a key and value of 1-64 visible characters"
            )));
        }
    }
    Ok(())
}

fn check_ttl(ttl: i64) -> Result<(), ManageError> {
    if !(1..=MAX_JWT_TTL_SECS).contains(&ttl) {
        return Err(ManageError::Invalid(format!("jwt_ttl_secs must be 1 to {MAX_JWT_TTL_SECS}")));
    }
    Ok(())
}

impl Manager {
    /// The account users may be managed in: tenants, and ADMIN (for more admins).
    async fn user_account(&self, name: &AccountName) -> Result<AccountRecord, ManageError> {
        let account = self.authority.account(name).await?;
        Self::open_for_changes(&account)?;
        match account.kind {
            AccountKind::Tenant | AccountKind::Admin => Ok(account),
            _ => Err(ManageError::Invalid(format!(
                "users of account {:?} are managed by nats-authd itself",
                account.name.as_str()
            ))),
        }
    }

    /// The role a user of `account` gets for `role` (`""`: the account's default), read so
    /// that the batch assigning it can require it unchanged: a role deleted meanwhile fails
    /// the write instead of leaving a user naming a role that no longer exists.
    async fn assignable_role(
        &self,
        account: &AccountRecord,
        role: &str,
    ) -> Result<Option<RoleRecord>, ManageError> {
        let name = if role.is_empty() {
            match &account.default_role {
                Some(name) => name.clone(),
                None => return Ok(None),
            }
        } else {
            RoleName::new(role)?
        };
        let key = RoleRecord::key_of(&account.name, &name);
        match self.authority.db().get::<RoleRecord>(&key).await? {
            Some(role) if !role.deleting => Ok(Some(role)),
            _ => Err(ManageError::NotFound { what: Noun::Role, name: key }),
        }
    }

    /// Refuses to take away the last active admin: `init` and `up` sign the admin creds, and
    /// nobody could manage anything any more. Returns another active admin, which the batch
    /// then requires unchanged, so two admins deleted at once cannot both go.
    async fn another_active_admin(&self, user: &UserRecord) -> Result<UserRecord, ManageError> {
        let prefix = format!("{}/", user.account);
        let admins = self.authority.db().list::<UserRecord>(&prefix).await?;
        admins
            .into_iter()
            .find(|u| u.kind == UserKind::Admin && u.active && u.name != user.name)
            .ok_or_else(|| {
                ManageError::Refused(format!(
                    "user {:?} is the last active admin; create another admin first",
                    user.name.as_str()
                ))
            })
    }

    async fn user_record(
        &self,
        account: &AccountRecord,
        name: &UserName,
    ) -> Result<UserRecord, ManageError> {
        Ok(self.authority.user(&account.name, name).await?)
    }

    /// Creates a user with a fresh nkey.
    ///
    /// # Errors
    /// 400 for invalid input, 404 for an unknown account or role, 409 for a taken name.
    pub async fn create_user(
        &self,
        req: CreateUser,
        now: UnixTime,
    ) -> Result<UserView, ManageError> {
        let account = self.user_account(&req.account).await?;
        let name = req.name.clone();
        let description = req.description.unwrap_or_default();
        check_len("description", &description, MAX_DESCRIPTION_LEN)?;
        // 0 is "no expiry", as in an update.
        let jwt_ttl_secs = req.jwt_ttl_secs.filter(|ttl| *ttl != 0);
        if let Some(ttl) = jwt_ttl_secs {
            check_ttl(ttl)?;
        }
        if let Some(password) = &req.password {
            check_password(password.as_str())?;
        }
        let role = match account.kind {
            AccountKind::Admin if req.role.is_some() => {
                return Err(ManageError::Invalid(
                    "admins have no role: they hold all of ADMIN".into(),
                ))
            }
            AccountKind::Admin => None,
            _ => self.assignable_role(&account, req.role.as_deref().unwrap_or("")).await?,
        };
        let kind =
            if account.kind == AccountKind::Admin { UserKind::Admin } else { UserKind::Member };
        let mut user =
            UserRecord::new(account.name.clone(), name, kind, self.authority.master(), now);
        user.role = role.as_ref().map(|r| r.name.clone());
        user.description = description;
        user.jwt_ttl_secs = jwt_ttl_secs;
        user.creds_issued = Some(CredsIssued::Never);
        user.bearer_token = req.bearer_token.unwrap_or(false);
        if let Some(tags) = req.tags {
            check_tags(&tags)?;
            user.tags = tags;
        }
        if let Some(password) = req.password {
            user.password_hash = Some(PasswordHash::new(self.hasher.hash(password.0).await?));
        }
        let mut batch = Batch::new();
        batch.create(&user);
        // The account must still be the one read above: not deleted (or being deleted) since;
        // and so must the role, or a delete racing this create would leave a dangling name.
        batch.require(&account);
        if let Some(role) = &role {
            batch.require(role);
        }
        // Names of tenant users with a password are unique across tenants (see `logins`).
        if user.password_hash.is_some() {
            self.claim_login(&account, &user.name, &mut batch).await?;
        }
        self.commit(batch).await.map_err(|e| Self::login_conflict(e, &user.name))?;
        Ok(UserView::from(&user))
    }

    /// One user.
    ///
    /// # Errors
    /// 404 if the account or user does not exist.
    pub async fn get_user(&self, req: UserRef) -> Result<UserView, ManageError> {
        let account = self.authority.account(&req.account).await?;
        Ok(UserView::from(&self.user_record(&account, &req.name).await?))
    }

    /// One page of the users of an account.
    ///
    /// # Errors
    /// 404 if the account does not exist.
    pub async fn list_users(
        &self,
        req: UserListRef,
        max_payload: usize,
    ) -> Result<Page<UserView>, ManageError> {
        let account = self.authority.account(&req.account).await?;
        let prefix = format!("{}/", account.name);
        let spec = PageSpec::new(req.limit, req.cursor, &prefix, max_payload)?;
        let rows = self
            .authority
            .db()
            .list_page::<UserRecord>(&prefix, spec.after.as_deref(), spec.limit + 1)
            .await?;
        spec.page(rows.into_iter().map(|(k, u)| (k, UserView::from(&u))).collect())
    }

    /// Changes a user. Deactivating revokes its key in the account JWT, which ends its live
    /// creds connections; reactivating gives it a new key (it needs new creds) and leaves the
    /// old key revoked. The last active admin cannot be deactivated.
    ///
    /// # Errors
    /// 400 for invalid input, 404 for unknown records, 409 on a concurrent change.
    pub async fn update_user(
        &self,
        req: UpdateUser,
        now: UnixTime,
    ) -> Result<UserView, ManageError> {
        let account = self.user_account(&req.account).await?;
        let current = self.user_record(&account, &req.name).await?;
        let mut user = current.clone();
        let mut assigned = None;
        if let Some(description) = req.description {
            check_len("description", &description, MAX_DESCRIPTION_LEN)?;
            user.description = description;
        }
        if let Some(role) = &req.role {
            if account.kind == AccountKind::Admin {
                return Err(ManageError::Invalid(
                    "admins have no role: they hold all of ADMIN".into(),
                ));
            }
            assigned = self.assignable_role(&account, role).await?;
            user.role = assigned.as_ref().map(|r| r.name.clone());
        }
        match req.jwt_ttl_secs {
            Some(0) => user.jwt_ttl_secs = None,
            Some(ttl) => {
                check_ttl(ttl)?;
                user.jwt_ttl_secs = Some(ttl);
            }
            None => {}
        }
        if let Some(bearer) = req.bearer_token {
            user.bearer_token = bearer;
        }
        if let Some(tags) = req.tags {
            check_tags(&tags)?;
            user.tags = tags;
        }
        let password_changed = req.password.is_some();
        match req.password {
            Some(p) if p.as_str().is_empty() => user.password_hash = None,
            Some(p) => {
                check_password(p.as_str())?;
                user.password_hash = Some(PasswordHash::new(self.hasher.hash(p.0).await?));
            }
            None => {}
        }
        let mut revoke = None;
        if let Some(active) = req.active {
            if active != user.active {
                revoke = Some(!active);
                user.active = active;
            }
        }
        if user == current {
            return Ok(UserView::from(&user));
        }
        user.updated_at = now;
        let mut batch = Batch::new();
        if revoke == Some(true) && user.kind == UserKind::Admin {
            batch.require(&self.another_active_admin(&current).await?);
        }
        if revoke == Some(false) {
            // Every JWT issued before the deactivation stays revoked for good: a reactivated
            // user gets a new key and needs new creds, so creds handed out before (and perhaps
            // the reason for the deactivation) do not come back to life.
            user.new_key(self.authority.master());
        }
        if let Some(role) = &assigned {
            batch.require(role);
        }
        // A first password makes the name a login, unique across tenants; taking the password
        // away frees the name (see `logins`).
        match (&current.password_hash, &user.password_hash) {
            (None, Some(_)) => {
                self.claim_login(&account, &user.name, &mut batch).await?;
                // Not claimed for an account being deleted (its cascade would leave the record).
                batch.require(&account);
            }
            (Some(_), None) => self.release_login(&account, &current, &mut batch).await?,
            _ => {}
        }
        batch.replace(&current, &user);
        if revoke == Some(true) {
            self.revoke_key(&account, &user, now, &mut batch);
        }
        self.commit(batch).await.map_err(|e| Self::login_conflict(e, &user.name))?;
        if revoke == Some(true) || password_changed {
            self.revoke(Revoked::User {
                account: user.account.to_string(),
                user: user.name.to_string(),
            });
        }
        Ok(UserView::from(&user))
    }

    /// Deletes a user and revokes its key, so live creds connections are cut.
    ///
    /// # Errors
    /// 404 for unknown records, 409 on a concurrent change.
    pub async fn delete_user(&self, req: UserRef, now: UnixTime) -> Result<UserView, ManageError> {
        let account = self.user_account(&req.account).await?;
        let user = self.user_record(&account, &req.name).await?;
        let mut batch = Batch::new();
        if user.kind == UserKind::Admin && user.active {
            batch.require(&self.another_active_admin(&user).await?);
        }
        batch.delete_unchanged(&user);
        self.release_login(&account, &user, &mut batch).await?;
        self.revoke_key(&account, &user, now, &mut batch);
        for token in self.tokens_of(&user.account, Some(&user.name)).await? {
            batch.delete::<crate::model::TokenRecord>(&token.id);
        }
        self.commit(batch).await?;
        self.revoke(Revoked::User {
            account: user.account.to_string(),
            user: user.name.to_string(),
        });
        Ok(UserView::from(&user))
    }

    /// Gives a user a new nkey, revokes the old one, and returns creds for the new one.
    ///
    /// # Errors
    /// 404 for unknown records, 409 for an inactive user or a concurrent change.
    pub async fn regenerate_user(
        &self,
        req: UserRef,
        now: UnixTime,
    ) -> Result<CredsView, ManageError> {
        let account = self.user_account(&req.account).await?;
        let current = self.user_record(&account, &req.name).await?;
        let mut user = current.clone();
        user.new_key(self.authority.master());
        user.updated_at = now;
        super::ensure_active(&account, &user)?;
        // The old key's revocation does not change the account's signing keys, so the creds
        // can be made from the account as read.
        let creds = Zeroizing::new(self.authority.creds_of(&account, &user, now).await?);
        user.note_creds(now);
        let mut batch = Batch::new();
        batch.replace(&current, &user);
        self.revoke_key(&account, &current, now, &mut batch);
        self.commit(batch).await?;
        Ok(CredsView::new(&account, &user, &creds))
    }

    /// Adds to `batch` the revocation of `user`'s current key in `account` (as read from the
    /// store) and the push of the account's JWT, if that changes it (see
    /// [`AccountRecord::revoke`]); either way the batch requires the account unchanged.
    fn revoke_key(
        &self,
        account: &AccountRecord,
        user: &UserRecord,
        now: UnixTime,
        batch: &mut Batch,
    ) {
        let mut changed = account.clone();
        if changed.revoke(&user.identity.public, user.creds_issued, now) {
            changed.updated_at = now;
            batch.replace(account, &changed);
            self.enqueue(batch, &changed, false, now);
        } else {
            batch.require(account);
        }
    }

    /// A creds file for a user, with a JWT carrying its role's permissions as they are now.
    ///
    /// # Errors
    /// 404 for unknown records, 409 for an inactive user or account.
    pub async fn user_creds(&self, req: UserRef, now: UnixTime) -> Result<CredsView, ManageError> {
        let account = self.user_account(&req.account).await?;
        let user = self.user_record(&account, &req.name).await?;
        self.creds_for(&account, &user, now).await
    }

    /// Creds of the system-account user `name` (default `operator`), made if missing: full
    /// rights in SYS, for the servers' own requests. Only ADMIN reaches this.
    ///
    /// # Errors
    /// Store or key failures.
    pub async fn sys_creds(
        &self,
        name: Option<UserName>,
        now: UnixTime,
    ) -> Result<CredsView, ManageError> {
        let name = name.unwrap_or_else(|| UserName::new(SYS_OPERATOR_USER).expect("valid"));
        let sys = self.authority.account(&AccountName::new(SYS_ACCOUNT).expect("valid")).await?;
        let user = match self
            .authority
            .db()
            .get::<UserRecord>(&UserRecord::key_of(&sys.name, &name))
            .await?
        {
            Some(user) => user,
            None => {
                let user = UserRecord::new(
                    sys.name.clone(),
                    name,
                    UserKind::Admin,
                    self.authority.master(),
                    now,
                );
                let mut batch = Batch::new();
                batch.create(&user).require(&sys);
                self.commit(batch).await?;
                user
            }
        };
        self.creds_for(&sys, &user, now).await
    }

    /// Creds for a stored user, handed out once its record says they were issued.
    async fn creds_for(
        &self,
        account: &AccountRecord,
        user: &UserRecord,
        now: UnixTime,
    ) -> Result<CredsView, ManageError> {
        super::ensure_active(account, user)?;
        let creds = Zeroizing::new(self.authority.issue_creds(account, user, now).await?);
        Ok(CredsView::new(account, user, &creds))
    }
}
