//! The records a login decision reads, behind a trait: the store in production
//! ([`StoreDirectory`]), an in-memory map in unit tests.
//!
//! Only tenant accounts are visible through the lookups a login uses ([`Directory::member`],
//! [`Directory::find_login`]): a user of SYS, AUTH or ADMIN is "no such user" to the callout,
//! so its password is never even checked there.

use async_trait::async_trait;

use crate::authority::Authority;
use crate::model::{
    AccountKind, AccountName, AccountRecord, RoleName, RoleRecord, TokenRecord, UserName,
    UserRecord,
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

/// Read access to accounts, users, roles and tokens.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// An account by name, of any kind.
    async fn account(&self, name: &AccountName) -> Result<Option<AccountRecord>, DirectoryError>;
    /// Every account, of any kind.
    async fn accounts(&self) -> Result<Vec<AccountRecord>, DirectoryError>;
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

    /// `name@account`, or a bare `name` that exactly one tenant account has (a name in two
    /// accounts is ambiguous: only `name@account` can say which).
    async fn find_login(
        &self,
        name: &UserName,
        account: Option<&AccountName>,
    ) -> Result<Option<Member>, DirectoryError> {
        if let Some(account) = account {
            return self.member(account, name).await;
        }
        let mut found = None;
        for account in self.accounts().await? {
            if account.kind != AccountKind::Tenant {
                continue;
            }
            if let Some(user) = self.user(&account.name, name).await? {
                if found.is_some() {
                    return Ok(None);
                }
                found = Some((account, user));
            }
        }
        Ok(found)
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

    async fn accounts(&self) -> Result<Vec<AccountRecord>, DirectoryError> {
        Ok(self.authority.db().list("").await?)
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

    async fn accounts(&self) -> Result<Vec<AccountRecord>, DirectoryError> {
        Ok(self.accounts.lock().unwrap().clone())
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
