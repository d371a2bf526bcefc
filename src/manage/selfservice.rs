//! Self-service: a tenant user acting on itself, and a tenant admin acting within its own
//! account. Every function takes a [`Caller`] resolved from what the server vouches for (the
//! `Nats-Request-Info` header) and then runs the same domain code, store batches and errors
//! as the ADMIN API, with the account fixed to the caller's.

use zeroize::Zeroizing;

use super::{ManageError, Manager, Noun};
use crate::api::role::{CreateRole, RoleListRef, RoleView, UpdateRole};
use crate::api::selfservice::{
    ChangePassword, LoginVia, SelfCreateToken, SelfListTokens, TenantCreateRole, TenantCreateToken,
    TenantCreateUser, TenantListRoles, TenantListTokens, TenantListUsers, TenantUpdateRole,
    TenantUpdateUser, WhoAmIView,
};
use crate::api::token::{CreateToken, ListTokens, RevokeToken, TokenCreated, TokenView};
use crate::api::user::{CreateUser, CredsView, UpdateUser, UserListRef, UserRef, UserView};
use crate::api::Page;
use crate::claims::{self, Validation};
use crate::model::{
    AccountKind, AccountRecord, RoleName, RoleRecord, SelfService, TokenRecord, UnixTime, UserKind,
    UserName, UserRecord,
};

/// A self-service caller: a user of an active tenant account, as the server identified it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: AccountRecord,
    pub user: UserRecord,
    pub role: Option<RoleRecord>,
    pub via: LoginVia,
    /// Expiry of the connection's JWT, when the server showed it (creds logins).
    pub jwt_expires_at: Option<UnixTime>,
}

/// One self-service right, for [`Caller::require`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    Whoami,
    Creds,
    Regenerate,
    Password,
    Tokens,
    Admin,
}

impl Right {
    fn granted(self, rights: &SelfService) -> bool {
        match self {
            Right::Whoami => rights.whoami,
            Right::Creds => rights.creds,
            Right::Regenerate => rights.regenerate,
            Right::Password => rights.password,
            Right::Tokens => rights.tokens,
            Right::Admin => rights.admin,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Right::Whoami => "whoami",
            Right::Creds => "creds",
            Right::Regenerate => "regenerate",
            Right::Password => "password",
            Right::Tokens => "tokens",
            Right::Admin => "admin",
        }
    }
}

impl Caller {
    /// What the caller's role lets it do (the defaults without a role).
    pub fn rights(&self) -> SelfService {
        self.role.as_ref().map(RoleRecord::self_service).unwrap_or_default()
    }

    /// Refuses unless the caller's role grants `right`.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`] naming the right.
    pub fn require(&self, right: Right) -> Result<(), ManageError> {
        if right.granted(&self.rights()) {
            return Ok(());
        }
        Err(ManageError::Forbidden(format!(
            "the role of user {:?} does not grant self-service {:?}",
            self.user.name.as_str(),
            right.name()
        )))
    }

    fn me(&self) -> UserRef {
        UserRef::new(self.account.name.clone(), self.user.name.clone())
    }
}

fn not_a_tenant_user() -> ManageError {
    ManageError::Forbidden("self-service is for users of tenant accounts only".into())
}

/// Whether `text` is a user nkey's public key (what the server reports for creds users).
fn is_user_public_key(text: &str) -> bool {
    text.starts_with('U') && nkeys::KeyPair::from_public_key(text).is_ok()
}

impl Manager {
    /// Resolves the caller from what the server wrote into `Nats-Request-Info`: `account_key`
    /// (`acc`), `user` (the user name for a callout login, the user's nkey for a creds login)
    /// and, for creds logins, the connection's `jwt`.
    ///
    /// # Errors
    /// [`ManageError::Forbidden`] unless the account is an active tenant nats-authd holds and
    /// the user is an active member of it whose identity matches.
    pub async fn caller(
        &self,
        account_key: &str,
        user: &str,
        jwt: Option<&str>,
        now: UnixTime,
    ) -> Result<Caller, ManageError> {
        let accounts = self.authority.db().list::<AccountRecord>("").await?;
        let account = accounts
            .into_iter()
            .find(|a| a.public_key() == account_key)
            .filter(|a| a.kind == AccountKind::Tenant)
            .ok_or_else(not_a_tenant_user)?;
        let (user, via, jwt_expires_at) = if is_user_public_key(user) {
            // A creds login: the server names the connection's nkey; it must be the user's
            // own identity key, and the JWT it connected with is for that key.
            let users =
                self.authority.db().list::<UserRecord>(&format!("{}/", account.name)).await?;
            let found = users
                .into_iter()
                .find(|u| u.identity.public == user)
                .ok_or_else(not_a_tenant_user)?;
            let expires = match jwt.map(|t| claims::decode::<claims::User>(t, &Validation::at(now)))
            {
                Some(Ok(c)) if c.subject == user => c.expires,
                _ => return Err(not_a_tenant_user()),
            };
            (found, LoginVia::Creds, expires)
        } else {
            // A callout login: the server names the minted JWT's `name`, our user name.
            let name = UserName::new(user).map_err(|_| not_a_tenant_user())?;
            let found = self
                .authority
                .db()
                .get::<UserRecord>(&UserRecord::key_of(&account.name, &name))
                .await?
                .ok_or_else(not_a_tenant_user)?;
            (found, LoginVia::Callout, None)
        };
        if user.kind != UserKind::Member || user.created_at < account.created_at {
            return Err(not_a_tenant_user());
        }
        super::ensure_active(&account, &user)?;
        let role = self.authority.role_of(&account, &user).await?;
        Ok(Caller { account, user, role, via, jwt_expires_at })
    }

    /// `self.whoami`.
    ///
    /// # Errors
    /// 403 if the role does not grant it.
    pub fn whoami(&self, caller: &Caller) -> Result<WhoAmIView, ManageError> {
        caller.require(Right::Whoami)?;
        let limits = crate::policy::connection_permissions(
            &caller.user,
            caller.role.as_ref(),
            caller.account.name.as_str(),
            &caller.user.identity.public,
        );
        let rights = caller.rights();
        Ok(WhoAmIView {
            account: caller.account.name.to_string(),
            user: caller.user.name.to_string(),
            public_key: caller.user.identity.public.clone(),
            role: caller.user.role.as_ref().map(ToString::to_string),
            permissions: limits.permissions,
            login: caller.via,
            jwt_expires_at: caller.jwt_expires_at,
            self_service: rights,
            tenant_admin: rights.admin,
        })
    }

    /// `self.creds`: the caller's own creds, signed now.
    ///
    /// # Errors
    /// 403 if the role does not grant it.
    pub async fn own_creds(
        &self,
        caller: &Caller,
        now: UnixTime,
    ) -> Result<CredsView, ManageError> {
        caller.require(Right::Creds)?;
        self.user_creds(caller.me(), now).await
    }

    /// `self.regenerate`: a new nkey for the caller, the old one revoked.
    ///
    /// # Errors
    /// 403 if the role does not grant it.
    pub async fn regenerate_own(
        &self,
        caller: &Caller,
        now: UnixTime,
    ) -> Result<CredsView, ManageError> {
        caller.require(Right::Regenerate)?;
        self.regenerate_user(caller.me(), now).await
    }

    /// `self.password`: the current password must verify; then the user's other callout
    /// sessions end (a password change revokes them, as for an admin's change).
    ///
    /// # Errors
    /// 403 without the right, or when the current password is wrong (nothing changes).
    pub async fn change_own_password(
        &self,
        caller: &Caller,
        req: ChangePassword,
        now: UnixTime,
    ) -> Result<UserView, ManageError> {
        caller.require(Right::Password)?;
        let Some(phc) = caller.user.password_hash.as_ref() else {
            return Err(ManageError::Forbidden(
                "user has no password to change; ask an admin to set one".into(),
            ));
        };
        let current = Zeroizing::new(req.current.as_str().to_string());
        if !self.hasher.verify(current, phc.as_str().to_string()).await? {
            return Err(ManageError::Forbidden("the current password is wrong".into()));
        }
        if req.new.as_str().is_empty() {
            return Err(ManageError::Invalid("the new password may not be empty".into()));
        }
        let mut update = UpdateUser::new(caller.account.name.clone(), caller.user.name.clone());
        update.password = Some(req.new);
        self.update_user(update, now).await
    }

    /// `self.token.create`.
    ///
    /// # Errors
    /// 403 without the right.
    pub async fn create_own_token(
        &self,
        caller: &Caller,
        req: SelfCreateToken,
        now: UnixTime,
    ) -> Result<TokenCreated, ManageError> {
        caller.require(Right::Tokens)?;
        let request = CreateToken {
            account: caller.account.name.clone(),
            user: caller.user.name.clone(),
            description: req.description,
        };
        self.create_token(request, now).await
    }

    /// `self.token.list`: one page of the caller's own tokens, in id order. Tokens are keyed
    /// by id, not under their owner, so the owner filter is applied before paging: a cursor,
    /// whatever it names, only moves the start within the caller's own tokens.
    ///
    /// # Errors
    /// 403 without the right, 400 for a bad `limit` or `cursor`.
    pub async fn list_own_tokens(
        &self,
        caller: &Caller,
        req: SelfListTokens,
        max_payload: usize,
    ) -> Result<Page<TokenView>, ManageError> {
        caller.require(Right::Tokens)?;
        let request = ListTokens {
            limit: req.limit,
            cursor: req.cursor,
            ..ListTokens::new(caller.account.name.clone(), Some(caller.user.name.clone()))
        };
        self.list_tokens(request, max_payload).await
    }

    /// `self.token.revoke`: only one of the caller's own tokens (any other id is "not found",
    /// so ids of others' tokens are not confirmed).
    ///
    /// # Errors
    /// 403 without the right, 404 for a token not the caller's.
    pub async fn revoke_own_token(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<TokenView, ManageError> {
        caller.require(Right::Tokens)?;
        self.token_in(caller, &id, Some(&caller.user.name)).await?;
        self.revoke_token(RevokeToken { id }).await
    }

    async fn token_in(
        &self,
        caller: &Caller,
        id: &str,
        user: Option<&UserName>,
    ) -> Result<TokenRecord, ManageError> {
        let record = self.authority.db().get::<TokenRecord>(id).await?;
        record
            .filter(|t| t.account == caller.account.name && user.is_none_or(|u| t.user == *u))
            .ok_or_else(|| ManageError::NotFound { what: Noun::Token, name: id.to_string() })
    }

    fn audit_tenant_admin(caller: &Caller, action: &str, target: &str) {
        tracing::info!(
            account = %caller.account.name,
            admin = %caller.user.name,
            action,
            target,
            "tenant admin change"
        );
    }

    /// `self.admin.user.list`: one page of the users of the caller's account. The page is read
    /// under the account's key prefix only, and a cursor outside it is refused, so no cursor
    /// reaches another account's users.
    ///
    /// # Errors
    /// 403 unless the caller is a tenant admin, 400 for a bad `limit` or `cursor`.
    pub async fn tenant_list_users(
        &self,
        caller: &Caller,
        req: TenantListUsers,
        max_payload: usize,
    ) -> Result<Page<UserView>, ManageError> {
        caller.require(Right::Admin)?;
        let request = UserListRef {
            limit: req.limit,
            cursor: req.cursor,
            ..UserListRef::new(caller.account.name.clone())
        };
        self.list_users(request, max_payload).await
    }

    /// `self.admin.user.create`.
    ///
    /// # Errors
    /// 403 unless a tenant admin; then as `user.create`.
    pub async fn tenant_create_user(
        &self,
        caller: &Caller,
        req: TenantCreateUser,
        now: UnixTime,
    ) -> Result<UserView, ManageError> {
        caller.require(Right::Admin)?;
        let request = CreateUser {
            account: caller.account.name.clone(),
            name: req.name,
            role: req.role,
            description: req.description,
            password: req.password,
            jwt_ttl_secs: req.jwt_ttl_secs,
            bearer_token: req.bearer_token,
            tags: req.tags,
        };
        let view = self.create_user(request, now).await?;
        Self::audit_tenant_admin(caller, "user.create", &view.name);
        Ok(view)
    }

    /// `self.admin.user.update`.
    ///
    /// # Errors
    /// 403 unless a tenant admin; then as `user.update`.
    pub async fn tenant_update_user(
        &self,
        caller: &Caller,
        req: TenantUpdateUser,
        now: UnixTime,
    ) -> Result<UserView, ManageError> {
        caller.require(Right::Admin)?;
        let request = UpdateUser {
            role: req.role,
            description: req.description,
            active: req.active,
            password: req.password,
            jwt_ttl_secs: req.jwt_ttl_secs,
            bearer_token: req.bearer_token,
            tags: req.tags,
            ..UpdateUser::new(caller.account.name.clone(), req.name)
        };
        let view = self.update_user(request, now).await?;
        Self::audit_tenant_admin(caller, "user.update", &view.name);
        Ok(view)
    }

    /// `self.admin.user.delete`.
    ///
    /// # Errors
    /// 403 unless a tenant admin; then as `user.delete`.
    pub async fn tenant_delete_user(
        &self,
        caller: &Caller,
        name: UserName,
        now: UnixTime,
    ) -> Result<UserView, ManageError> {
        caller.require(Right::Admin)?;
        let view = self.delete_user(UserRef::new(caller.account.name.clone(), name), now).await?;
        Self::audit_tenant_admin(caller, "user.delete", &view.name);
        Ok(view)
    }

    /// `self.admin.user.regenerate`.
    ///
    /// # Errors
    /// 403 unless a tenant admin; then as `user.regenerate`.
    pub async fn tenant_regenerate_user(
        &self,
        caller: &Caller,
        name: UserName,
        now: UnixTime,
    ) -> Result<CredsView, ManageError> {
        caller.require(Right::Admin)?;
        let creds =
            self.regenerate_user(UserRef::new(caller.account.name.clone(), name), now).await?;
        Self::audit_tenant_admin(caller, "user.regenerate", &creds.name);
        Ok(creds)
    }

    /// `self.admin.role.list`: one page of the roles of the caller's account, bounded to its
    /// key prefix as [`Manager::tenant_list_users`] is.
    ///
    /// # Errors
    /// 403 unless a tenant admin, 400 for a bad `limit` or `cursor`.
    pub async fn tenant_list_roles(
        &self,
        caller: &Caller,
        req: TenantListRoles,
        max_payload: usize,
    ) -> Result<Page<RoleView>, ManageError> {
        caller.require(Right::Admin)?;
        let request = RoleListRef {
            limit: req.limit,
            cursor: req.cursor,
            ..RoleListRef::new(caller.account.name.clone())
        };
        self.list_roles(request, max_payload).await
    }

    /// A tenant admin may not change the role it holds itself: its own rights come from an
    /// operator, never from itself.
    fn not_own_role(caller: &Caller, role: &RoleName) -> Result<(), ManageError> {
        if caller.user.role.as_ref() == Some(role) {
            return Err(ManageError::Forbidden(format!(
                "a tenant admin cannot change its own role {:?}; an operator can",
                role.as_str()
            )));
        }
        Ok(())
    }

    /// `self.admin.role.create`: never with self-service rights (the defaults apply).
    ///
    /// # Errors
    /// 403 unless a tenant admin; then as `role.create`.
    pub async fn tenant_create_role(
        &self,
        caller: &Caller,
        req: TenantCreateRole,
        now: UnixTime,
    ) -> Result<RoleView, ManageError> {
        caller.require(Right::Admin)?;
        let mut request = CreateRole::new(caller.account.name.clone(), req.name);
        request.description = req.description;
        request.publish = req.publish;
        request.subscribe = req.subscribe;
        request.response = req.response;
        request.limits = req.limits;
        let view = self.create_role(request, now).await?;
        Self::audit_tenant_admin(caller, "role.create", &view.name);
        Ok(view)
    }

    /// `self.admin.role.update`: not of the role the caller holds.
    ///
    /// # Errors
    /// 403 unless a tenant admin, or for its own role; then as `role.update`.
    pub async fn tenant_update_role(
        &self,
        caller: &Caller,
        req: TenantUpdateRole,
        now: UnixTime,
    ) -> Result<RoleView, ManageError> {
        caller.require(Right::Admin)?;
        Self::not_own_role(caller, &req.name)?;
        let mut request = UpdateRole::new(caller.account.name.clone(), req.name);
        request.description = req.description;
        request.publish = req.publish;
        request.subscribe = req.subscribe;
        request.response = req.response;
        request.limits = req.limits;
        let view = self.update_role(request, now).await?;
        Self::audit_tenant_admin(caller, "role.update", &view.name);
        Ok(view)
    }

    /// `self.admin.role.delete`: not of the role the caller holds.
    ///
    /// # Errors
    /// 403 unless a tenant admin, or for its own role; then as `role.delete`.
    pub async fn tenant_delete_role(
        &self,
        caller: &Caller,
        name: RoleName,
        now: UnixTime,
    ) -> Result<RoleView, ManageError> {
        caller.require(Right::Admin)?;
        Self::not_own_role(caller, &name)?;
        let request = crate::api::role::RoleRef::new(caller.account.name.clone(), name);
        let view = self.delete_role(request, now).await?;
        Self::audit_tenant_admin(caller, "role.delete", &view.name);
        Ok(view)
    }

    /// `self.admin.token.create`.
    ///
    /// # Errors
    /// 403 unless a tenant admin; then as `token.create`.
    pub async fn tenant_create_token(
        &self,
        caller: &Caller,
        req: TenantCreateToken,
        now: UnixTime,
    ) -> Result<TokenCreated, ManageError> {
        caller.require(Right::Admin)?;
        let request = CreateToken {
            account: caller.account.name.clone(),
            user: req.user,
            description: req.description,
        };
        let created = self.create_token(request, now).await?;
        Self::audit_tenant_admin(caller, "token.create", &created.view.id);
        Ok(created)
    }

    /// `self.admin.token.list`: one page of the tokens of the caller's account (of one of its
    /// users, if named), filtered to the account before paging as `self.token.list` is.
    ///
    /// # Errors
    /// 403 unless a tenant admin, 400 for a bad `limit` or `cursor`.
    pub async fn tenant_list_tokens(
        &self,
        caller: &Caller,
        req: TenantListTokens,
        max_payload: usize,
    ) -> Result<Page<TokenView>, ManageError> {
        caller.require(Right::Admin)?;
        let request = ListTokens {
            limit: req.limit,
            cursor: req.cursor,
            ..ListTokens::new(caller.account.name.clone(), req.user)
        };
        self.list_tokens(request, max_payload).await
    }

    /// `self.admin.token.revoke`: a token of the caller's account only.
    ///
    /// # Errors
    /// 403 unless a tenant admin, 404 for a token of another account.
    pub async fn tenant_revoke_token(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<TokenView, ManageError> {
        caller.require(Right::Admin)?;
        self.token_in(caller, &id, None).await?;
        let view = self.revoke_token(RevokeToken { id }).await?;
        Self::audit_tenant_admin(caller, "token.revoke", &view.id);
        Ok(view)
    }
}
