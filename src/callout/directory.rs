//! The records a login decision reads, behind a trait: the store in production
//! ([`StoreDirectory`], which reads the store every time but decodes a record again only
//! when its stored bytes changed), an in-memory map in unit tests.
//!
//! Only tenant accounts are visible through the lookups a login uses ([`Directory::member`],
//! [`Directory::find_login`]): a user of SYS, AUTH or ADMIN is "no such user" to the callout,
//! so its password is never even checked there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::authority::Authority;
use crate::model::{
    AccountKind, AccountName, AccountRecord, LoginRecord, RoleName, RoleRecord, TokenRecord,
    UserName, UserRecord,
};
use crate::store::{self, Record, StoreError};

/// Why a lookup failed (not "absent": that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tenant account and one of its users.
pub type Member = (Arc<AccountRecord>, Arc<UserRecord>);

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
    async fn account(
        &self,
        name: &AccountName,
    ) -> Result<Option<Arc<AccountRecord>>, DirectoryError>;
    /// The accounts whose user `name` logs in by bare name (the login records: at most one).
    async fn login_accounts(&self, name: &UserName) -> Result<Vec<AccountName>, DirectoryError>;
    /// A user by account and name.
    async fn user(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<Option<Arc<UserRecord>>, DirectoryError>;
    /// A role by account and name.
    async fn role(
        &self,
        account: &AccountName,
        name: &RoleName,
    ) -> Result<Option<Arc<RoleRecord>>, DirectoryError>;
    /// An API token by id.
    async fn token(&self, id: &str) -> Result<Option<Arc<TokenRecord>>, DirectoryError>;

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
    async fn role_of(&self, user: &UserRecord) -> Result<Option<Arc<RoleRecord>>, DirectoryError> {
        match &user.role {
            Some(role) => self.role(&user.account, role).await,
            None => Ok(None),
        }
    }
}

/// The store, as the callout reads it.
#[derive(Clone)]
pub struct StoreDirectory {
    authority: Authority,
    decoded: Arc<Decoded>,
}

impl StoreDirectory {
    /// A directory over `authority`'s store.
    pub fn new(authority: Authority) -> Self {
        let decoded = Decoded {
            // Accounts are few and every login reads one; the others are per user, and what
            // matters is that a login's second read (the re-check) finds its first.
            accounts: Shared::new(1 << 20),
            users: Shared::new(256 << 10),
            roles: Shared::new(256 << 10),
            tokens: Shared::new(256 << 10),
        };
        StoreDirectory { authority, decoded: Arc::new(decoded) }
    }

    /// The `R` under `key`, decoded again only if its stored bytes changed.
    async fn get<R: Record>(
        &self,
        key: &str,
        cache: impl Fn(&Decoded) -> &Shared<R>,
    ) -> Result<Option<Arc<R>>, DirectoryError> {
        let Some(bytes) = self.authority.db().store().get(R::TREE, key).await? else {
            return Ok(None);
        };
        Ok(Some(cache(&self.decoded).get(key, bytes)?))
    }
}

// Not `Debug`: the cache holds stored bytes, password and token hashes among them.
impl std::fmt::Debug for StoreDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDirectory").finish_non_exhaustive()
    }
}

/// The records every login reads again (its account, role, user, token), kept decoded.
struct Decoded {
    accounts: Shared<AccountRecord>,
    users: Shared<UserRecord>,
    roles: Shared<RoleRecord>,
    tokens: Shared<TokenRecord>,
}

/// Records by key, each with the stored bytes it was decoded from. A login compares the bytes
/// it has just read instead of decoding JSON: decoding was most of the directory's cost, the
/// account's above all, read twice per login. Always as fresh as the read itself.
struct Shared<R> {
    entries: Mutex<SharedEntries<R>>,
    /// Stored bytes kept; past that the cache starts over.
    max_bytes: usize,
}

struct SharedEntries<R> {
    by_key: HashMap<String, (Vec<u8>, Arc<R>)>,
    bytes: usize,
}

impl<R: Record> Shared<R> {
    fn new(max_bytes: usize) -> Self {
        let entries = SharedEntries { by_key: HashMap::new(), bytes: 0 };
        Shared { entries: Mutex::new(entries), max_bytes }
    }

    fn get(&self, key: &str, bytes: Vec<u8>) -> Result<Arc<R>, StoreError> {
        if let Some((seen, record)) = self.lock().by_key.get(key) {
            if *seen == bytes {
                return Ok(Arc::clone(record));
            }
        }
        let record = Arc::new(store::decode::<R>(key, &bytes)?);
        // A record too big to keep (an account with a long revocation list) is decoded each
        // time rather than pushing out every other.
        let mut entries = self.lock();
        if let Some((old, _)) = entries.by_key.remove(key) {
            entries.bytes -= old.len();
        }
        if bytes.len() <= self.max_bytes / 8 {
            if entries.bytes + bytes.len() > self.max_bytes {
                entries.by_key.clear();
                entries.bytes = 0;
            }
            entries.bytes += bytes.len();
            entries.by_key.insert(key.to_string(), (bytes, Arc::clone(&record)));
        }
        Ok(record)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedEntries<R>> {
        // Only plain map operations run under the lock: a panic there leaves it usable.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Directory for StoreDirectory {
    async fn account(
        &self,
        name: &AccountName,
    ) -> Result<Option<Arc<AccountRecord>>, DirectoryError> {
        self.get(name.as_str(), |d| &d.accounts).await
    }

    async fn login_accounts(&self, name: &UserName) -> Result<Vec<AccountName>, DirectoryError> {
        let login: Option<LoginRecord> = self.authority.db().get(name.as_str()).await?;
        Ok(login.map(|l| l.accounts).unwrap_or_default())
    }

    async fn user(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<Option<Arc<UserRecord>>, DirectoryError> {
        self.get(&UserRecord::key_of(account, name), |d| &d.users).await
    }

    async fn role(
        &self,
        account: &AccountName,
        name: &RoleName,
    ) -> Result<Option<Arc<RoleRecord>>, DirectoryError> {
        self.get(&RoleRecord::key_of(account, name), |d| &d.roles).await
    }

    async fn token(&self, id: &str) -> Result<Option<Arc<TokenRecord>>, DirectoryError> {
        self.get(id, |d| &d.tokens).await
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
    async fn account(
        &self,
        name: &AccountName,
    ) -> Result<Option<Arc<AccountRecord>>, DirectoryError> {
        Ok(self.accounts.lock().unwrap().iter().find(|a| &a.name == name).cloned().map(Arc::new))
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
    ) -> Result<Option<Arc<UserRecord>>, DirectoryError> {
        let users = self.users.lock().unwrap();
        Ok(users.iter().find(|u| &u.account == account && &u.name == name).cloned().map(Arc::new))
    }

    async fn role(
        &self,
        account: &AccountName,
        name: &RoleName,
    ) -> Result<Option<Arc<RoleRecord>>, DirectoryError> {
        let roles = self.roles.lock().unwrap();
        Ok(roles.iter().find(|r| &r.account == account && &r.name == name).cloned().map(Arc::new))
    }

    async fn token(&self, id: &str) -> Result<Option<Arc<TokenRecord>>, DirectoryError> {
        Ok(self.tokens.lock().unwrap().iter().find(|t| t.id == id).cloned().map(Arc::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(name: &str, accounts: &[&str]) -> Vec<u8> {
        let accounts = accounts.iter().map(|a| AccountName::new(a).unwrap()).collect();
        serde_json::to_vec(&LoginRecord { name: UserName::new(name).unwrap(), accounts }).unwrap()
    }

    #[test]
    fn a_record_is_decoded_again_only_when_its_bytes_change() {
        let cache = Shared::<LoginRecord>::new(1 << 20);
        let first = cache.get("dev1", login("dev1", &["acme"])).unwrap();
        let again = cache.get("dev1", login("dev1", &["acme"])).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same bytes, same decoded record");

        let changed = cache.get("dev1", login("dev1", &["globex"])).unwrap();
        assert_eq!(changed.accounts, [AccountName::new("globex").unwrap()]);
        assert_eq!(cache.lock().bytes, login("dev1", &["globex"]).len(), "replaced, not added");

        let err = cache.get("dev2", b"{not json".to_vec()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(!cache.lock().by_key.contains_key("dev2"));
    }

    #[test]
    fn the_cache_stays_within_its_bytes_and_keeps_no_record_too_big_for_it() {
        let max = 256 << 10;
        let cache = Shared::<LoginRecord>::new(max);
        let big: Vec<String> = (0..max / 8 / 10).map(|i| format!("account{i:05}")).collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        let big = login("big", &big);
        assert!(big.len() > max / 8);
        cache.get("big", login("big", &["acme"])).unwrap();
        let first = cache.get("big", big.clone()).unwrap();
        assert!(!cache.lock().by_key.contains_key("big"), "the small one it replaced is gone");
        let again = cache.get("big", big).unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "decoded each time");
        assert_eq!(cache.lock().bytes, 0);

        let records = max / 30;
        for i in 0..records {
            let name = format!("u{i:06}");
            cache.get(&name, login(&name, &["acme"])).unwrap();
            assert!(cache.lock().bytes <= max);
        }
        let entries = cache.lock();
        assert!(entries.by_key.len() < records, "started over at least once");
        assert_eq!(entries.bytes, entries.by_key.values().map(|(b, _)| b.len()).sum::<usize>());
    }
}
