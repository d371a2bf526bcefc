//! The records a login decision reads, behind a trait: the store in production
//! ([`StoreDirectory`]), an in-memory map in unit tests.
//!
//! Only tenant accounts are visible through the lookups a login uses ([`Directory::member`],
//! [`Directory::find_login`]): a user of SYS, AUTH or ADMIN is "no such user" to the callout,
//! so its password is never even checked there.

use async_trait::async_trait;

use crate::authority::Authority;
use crate::model::{
    AccountKind, AccountName, AccountRecord, LoginRecord, RoleName, RoleRecord, TokenRecord,
    UserName, UserRecord,
};
use crate::store::StoreError;

/// Why a lookup failed (not "absent": that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tenant account and one of its users.
pub type Member = (AccountRecord, UserRecord);

/// What a login name resolves to.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Exactly one user.
    Found(Box<Member>),
    /// No such user.
    Missing,
    /// A bare name that users of several tenant accounts have (left from before names were
    /// unique across tenants, or two creates racing): only `name@account` can say which.
    Ambiguous,
}

/// Read access to accounts, users, roles and tokens.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// An account by name, of any kind.
    async fn account(&self, name: &AccountName) -> Result<Option<AccountRecord>, DirectoryError>;
    /// The accounts whose user `name` logs in by bare name (the login records: at most one).
    async fn login_accounts(&self, name: &UserName) -> Result<Vec<AccountName>, DirectoryError>;
    /// A user by account and name.
    async fn user(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<Option<UserRecord>, DirectoryError>;
    /// A role by account and name.
    async fn role(
        &self,
        account: &AccountName,
        name: &RoleName,
    ) -> Result<Option<RoleRecord>, DirectoryError>;
    /// An API token by id.
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, DirectoryError>;

    /// A user of a tenant account, by account and name.
    async fn member(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<Option<Member>, DirectoryError> {
        let Some(account) = self.account(account).await? else { return Ok(None) };
        if account.kind != AccountKind::Tenant {
            return Ok(None);
        }
        Ok(self.user(&account.name, name).await?.map(|user| (account, user)))
    }

    /// `name@account`, or a bare `name` that a user with a password of exactly one tenant
    /// account has. Such names are unique across tenant accounts, kept so by one login record
    /// per name (see `manage::logins`), so a bare name means one user, found with one read,
    /// and no tenant can take another's login away; a name found in several accounts anyway
    /// is [`Lookup::Ambiguous`].
    async fn resolve_login(
        &self,
        name: &UserName,
        account: Option<&AccountName>,
    ) -> Result<Lookup, DirectoryError> {
        if let Some(account) = account {
            return Ok(self
                .member(account, name)
                .await?
                .map_or(Lookup::Missing, |m| Lookup::Found(Box::new(m))));
        }
        let mut found = None;
        for account in self.login_accounts(name).await? {
            // Only users with a password of a tenant log in by name.
            let Some((account, user)) = self.member(&account, name).await? else { continue };
            if user.password_hash.is_none() {
                continue;
            }
            if found.is_some() {
                return Ok(Lookup::Ambiguous);
            }
            found = Some((account, user));
        }
        Ok(found.map_or(Lookup::Missing, |m| Lookup::Found(Box::new(m))))
    }

    /// As [`Directory::resolve_login`], with an ambiguous name as `None`.
    async fn find_login(
        &self,
        name: &UserName,
        account: Option<&AccountName>,
    ) -> Result<Option<Member>, DirectoryError> {
        Ok(match self.resolve_login(name, account).await? {
            Lookup::Found(member) => Some(*member),
            Lookup::Missing | Lookup::Ambiguous => None,
        })
    }

    /// The role a user holds, if any (and if it still exists).
    async fn role_of(&self, user: &UserRecord) -> Result<Option<RoleRecord>, DirectoryError> {
        match &user.role {
            Some(role) => self.role(&user.account, role).await,
            None => Ok(None),
        }
    }
}

/// The store, as the callout reads it.
#[derive(Debug, Clone)]
pub struct StoreDirectory {
    authority: Authority,
}

impl StoreDirectory {
    /// A directory over `authority`'s store.
    pub fn new(authority: Authority) -> Self {
        StoreDirectory { authority }
    }
}

#[async_trait]
impl Directory for StoreDirectory {
    async fn account(&self, name: &AccountName) -> Result<Option<AccountRecord>, DirectoryError> {
        Ok(self.authority.db().get(name.as_str()).await?)
    }

    async fn login_accounts(&self, name: &UserName) -> Result<Vec<AccountName>, DirectoryError> {
        let login: Option<LoginRecord> = self.authority.db().get(name.as_str()).await?;
        Ok(login.map(|l| l.accounts).unwrap_or_default())
    }

    async fn user(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<Option<UserRecord>, DirectoryError> {
        Ok(self.authority.db().get(&UserRecord::key_of(account, name)).await?)
    }

    async fn role(
        &self,
        account: &AccountName,
        name: &RoleName,
    ) -> Result<Option<RoleRecord>, DirectoryError> {
        Ok(self.authority.db().get(&RoleRecord::key_of(account, name)).await?)
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, DirectoryError> {
        Ok(self.authority.db().get(id).await?)
    }
}

/// Records in memory, for unit tests of the decision.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    pub accounts: std::sync::Mutex<Vec<AccountRecord>>,
    pub users: std::sync::Mutex<Vec<UserRecord>>,
    pub roles: std::sync::Mutex<Vec<RoleRecord>>,
    pub tokens: std::sync::Mutex<Vec<TokenRecord>>,
}

#[cfg(test)]
#[async_trait]
impl Directory for MemoryDirectory {
    async fn account(&self, name: &AccountName) -> Result<Option<AccountRecord>, DirectoryError> {
        Ok(self.accounts.lock().unwrap().iter().find(|a| &a.name == name).cloned())
    }

    /// Every account with a user of that name and a password, so that tests can also hold
    /// what the login records prevent.
    async fn login_accounts(&self, name: &UserName) -> Result<Vec<AccountName>, DirectoryError> {
        let users = self.users.lock().unwrap();
        let with_password = users.iter().filter(|u| &u.name == name && u.password_hash.is_some());
        Ok(with_password.map(|u| u.account.clone()).collect())
    }

    async fn user(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<Option<UserRecord>, DirectoryError> {
        let users = self.users.lock().unwrap();
        Ok(users.iter().find(|u| &u.account == account && &u.name == name).cloned())
    }

    async fn role(
        &self,
        account: &AccountName,
        name: &RoleName,
    ) -> Result<Option<RoleRecord>, DirectoryError> {
        let roles = self.roles.lock().unwrap();
        Ok(roles.iter().find(|r| &r.account == account && &r.name == name).cloned())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, DirectoryError> {
        Ok(self.tokens.lock().unwrap().iter().find(|t| t.id == id).cloned())
    }
}
