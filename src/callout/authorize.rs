//! The callout decision: who is this, may they in, and with which JWT. Plain async code over
//! the store, no NATS, so it is tested directly.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::cache::VerifiedCache;
use super::credential::{self, Credential, Token};
use super::limiter::{Limiter, Limits};
use crate::authority::Authority;
use crate::claims::{AuthorizationRequest, Claims};
use crate::model::{
    AccountKind, AccountName, AccountRecord, TokenRecord, UnixTime, UserKind, UserName, UserRecord,
};
use crate::password::PasswordHasher;
use crate::policy;
use crate::trust;

/// Longest login name accepted (`name@account` of two 64-character names, and then some).
pub const MAX_LOGIN_LEN: usize = 256;

/// Callout tuning.
#[derive(Debug, Clone)]
pub struct CalloutSettings {
    /// Lifetime of minted user JWTs (a user's own `jwt_ttl_secs` wins when shorter).
    pub jwt_ttl: Duration,
    /// How long a verified password is remembered (0: never).
    pub cache_ttl: Duration,
    /// Brute-force limits.
    pub limits: Limits,
}

impl Default for CalloutSettings {
    fn default() -> Self {
        CalloutSettings {
            jwt_ttl: Duration::from_secs(3600),
            cache_ttl: Duration::from_secs(900),
            limits: Limits::default(),
        }
    }
}

/// Why a login was refused. The category goes to the server log and our audit events; the
/// client only ever sees "authorization violation".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No credential, or one that cannot be read.
    Malformed,
    /// No such user (or token), or a name that fits users of several accounts.
    UnknownUser,
    /// Wrong password or token.
    BadSecret,
    /// The user or its account is deactivated (or not a tenant user).
    Inactive,
    /// Too many recent failures for this login or address.
    RateLimited,
    /// The request expired before its turn to hash: dropped, no answer.
    Expired,
    /// Our failure (store, keys).
    Internal,
}

impl Refusal {
    /// The category as text.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownUser => "unknown_user",
            Refusal::BadSecret => "bad_secret",
            Refusal::Inactive => "inactive",
            Refusal::RateLimited => "rate_limited",
            Refusal::Expired => "expired",
            Refusal::Internal => "internal",
        }
    }
}

/// An admitted login.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub account: AccountRecord,
    pub user: UserRecord,
    /// The minted user JWT.
    pub jwt: String,
    pub expires: UnixTime,
    /// The API token used, if any.
    pub token_id: Option<String>,
    /// Whether argon2 was skipped thanks to the cache.
    pub cached: bool,
}

/// The outcome of one request.
#[derive(Debug)]
pub struct Decision {
    /// The login name (or token id) presented, for audit.
    pub login: String,
    pub result: Result<Allowed, Refusal>,
}

/// Decides logins; shared by every in-flight request.
pub struct Authorizer {
    authority: Authority,
    hasher: PasswordHasher,
    cache: VerifiedCache,
    limiter: Limiter,
    settings: CalloutSettings,
    /// A hash of nothing anyone knows: verified against for unknown users, so they cost the
    /// same time as known ones.
    decoy: Arc<String>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authorizer {
    /// An authorizer over `authority`.
    ///
    /// # Errors
    /// If the decoy hash cannot be made.
    pub async fn new(
        authority: Authority,
        hasher: PasswordHasher,
        settings: CalloutSettings,
    ) -> Result<Self, crate::password::PasswordError> {
        let decoy = hasher.hash(Token::generate().secret).await?;
        Ok(Authorizer {
            authority,
            hasher,
            cache: VerifiedCache::new(settings.cache_ttl),
            limiter: Limiter::new(settings.limits),
            settings,
            decoy: Arc::new(decoy),
        })
    }

    /// Decides one verified authorization request. `deadline` is when the server stops
    /// waiting: a password whose turn to hash comes later is not hashed ([`Refusal::Expired`]).
    pub async fn authorize(
        &self,
        request: &Claims<AuthorizationRequest>,
        deadline: Instant,
        now: UnixTime,
    ) -> Decision {
        let host = request.nats.client_information.host.clone();
        let Some(credential) = credential::parse(&request.nats.connect_options) else {
            return Decision { login: String::new(), result: Err(Refusal::Malformed) };
        };
        // One spelling per login for the limiter and the audit: lookups normalize the same way.
        let login = credential.login().trim().to_ascii_lowercase();
        if login.len() > MAX_LOGIN_LEN {
            return Decision { login: String::new(), result: Err(Refusal::Malformed) };
        }
        let result = self.check(&credential, &login, &host, request, deadline, now).await;
        Decision { login, result }
    }

    /// Reserves a limiter slot around `verify`: refused without running it when over the
    /// limit; the slot is given back if the secret was right.
    async fn limited<F>(&self, login: &str, host: &str, verify: F) -> Result<bool, Refusal>
    where
        F: std::future::Future<Output = Result<bool, Refusal>>,
    {
        if !self.limiter.attempt(login, host) {
            return Err(Refusal::RateLimited);
        }
        let verified = verify.await;
        // A right secret, or one never checked (expired in the queue), is not a failure.
        match verified {
            Ok(true) | Err(Refusal::Expired) => self.limiter.succeeded(login),
            _ => self.limiter.failed(host),
        }
        verified
    }

    async fn check(
        &self,
        credential: &Credential,
        login: &str,
        host: &str,
        request: &Claims<AuthorizationRequest>,
        deadline: Instant,
        now: UnixTime,
    ) -> Result<Allowed, Refusal> {
        let (found, token_id, cached) = match credential {
            Credential::Password { password, .. } => {
                let found = self.find_user(login).await?;
                let phc = found
                    .as_ref()
                    .and_then(|(_, u)| u.password_hash.as_ref().map(|h| h.as_str().to_string()));
                // A cache hit needs the right password for the current hash: it skips the
                // limiter too, so a lockout does not keep out a reconnect storm.
                let cached = phc.as_deref().is_some_and(|phc| self.cache.hit(phc, password));
                if !cached {
                    let target = phc.clone().unwrap_or_else(|| self.decoy.to_string());
                    let verify = async {
                        self.hasher
                            .verify_by(password.clone(), target, deadline)
                            .await
                            .map_err(|_| Refusal::Internal)?
                            .ok_or(Refusal::Expired)
                            .map(|ok| ok && found.is_some() && phc.is_some())
                    };
                    let verified = self.limited(login, host, verify).await?;
                    match (&found, &phc, verified) {
                        (None, _, _) => return Err(Refusal::UnknownUser),
                        (Some(_), Some(phc), true) => self.cache.insert(phc, password),
                        _ => return Err(Refusal::BadSecret),
                    }
                }
                (found.expect("checked above"), None, cached)
            }
            Credential::Token(token) => {
                let record = self
                    .authority
                    .db()
                    .get::<TokenRecord>(&token.id)
                    .await
                    .map_err(|_| Refusal::Internal)?;
                let matches = record.as_ref().is_some_and(|r| {
                    constant_time_eq(token.secret_sha256().as_bytes(), r.secret_sha256.as_bytes())
                });
                if !self.limited(login, host, async { Ok(matches) }).await? {
                    return Err(if record.is_none() {
                        Refusal::UnknownUser
                    } else {
                        Refusal::BadSecret
                    });
                }
                let record = record.expect("matched a record");
                let found =
                    self.user(&record.account, &record.user).await?.ok_or(Refusal::UnknownUser)?;
                (found, Some(record.id), false)
            }
        };
        let (account, user) = found;
        // Checked after the secret, so an attacker learns nothing from which check failed.
        if !account.active
            || !user.active
            || account.kind != AccountKind::Tenant
            || user.kind != UserKind::Member
        {
            return Err(Refusal::Inactive);
        }
        // Leftovers of a delete that raced a create must not come back to life in a new
        // account or user of the same name.
        if user.created_at < account.created_at {
            return Err(Refusal::UnknownUser);
        }
        if let Some(id) = &token_id {
            let record =
                self.authority.db().get::<TokenRecord>(id).await.map_err(|_| Refusal::Internal)?;
            if record.is_none_or(|t| t.created_at < user.created_at) {
                return Err(Refusal::UnknownUser);
            }
        }
        let role = self.authority.role_of(&account, &user).await.map_err(|_| Refusal::Internal)?;
        let permissions = policy::connection_permissions(
            &user,
            role.as_ref(),
            account.name.as_str(),
            &request.nats.user_nkey,
        );
        let ttl = self.settings.jwt_ttl.as_secs() as i64;
        let expires = now + user.jwt_ttl_secs.map_or(ttl, |own| own.min(ttl));
        let jwt = trust::user_jwt(
            &account,
            &request.nats.user_nkey,
            user.name.as_str(),
            permissions,
            Some(expires),
            self.authority.master(),
            now,
        )
        .map_err(|_| Refusal::Internal)?;
        Ok(Allowed { account, user, jwt, expires, token_id, cached })
    }

    /// The store and keys.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether an admitted login is still valid now: the same user and account, active, with
    /// the same password hash, and its token still there. Called after the session is
    /// recorded, so a revocation either shows here or finds the session to kick.
    pub async fn still_valid(&self, allowed: &Allowed) -> bool {
        let Ok(Some((account, user))) = self.user(&allowed.account.name, &allowed.user.name).await
        else {
            return false;
        };
        let token_ok = match &allowed.token_id {
            Some(id) => matches!(self.authority.db().get::<TokenRecord>(id).await, Ok(Some(_))),
            None => true,
        };
        token_ok
            && account.active
            && user.active
            && account.public_key() == allowed.account.public_key()
            && user.identity.public == allowed.user.identity.public
            && user.password_hash == allowed.user.password_hash
    }

    async fn user(
        &self,
        account: &AccountName,
        name: &UserName,
    ) -> Result<Option<(AccountRecord, UserRecord)>, Refusal> {
        let db = self.authority.db();
        let Some(account) =
            db.get::<AccountRecord>(account.as_str()).await.map_err(|_| Refusal::Internal)?
        else {
            return Ok(None);
        };
        let user = db
            .get::<UserRecord>(&UserRecord::key_of(&account.name, name))
            .await
            .map_err(|_| Refusal::Internal)?;
        Ok(user.map(|u| (account, u)))
    }

    /// `name@account`, or a bare `name` that only one tenant account has.
    async fn find_user(&self, login: &str) -> Result<Option<(AccountRecord, UserRecord)>, Refusal> {
        if let Some((name, account)) = login.rsplit_once('@') {
            let (Ok(name), Ok(account)) = (UserName::new(name), AccountName::new(account)) else {
                return Ok(None);
            };
            return self.user(&account, &name).await;
        }
        let Ok(name) = UserName::new(login) else { return Ok(None) };
        let db = self.authority.db();
        let mut found = None;
        for account in db.list::<AccountRecord>("").await.map_err(|_| Refusal::Internal)? {
            if account.kind != AccountKind::Tenant {
                continue;
            }
            let key = UserRecord::key_of(&account.name, &name);
            if let Some(user) = db.get::<UserRecord>(&key).await.map_err(|_| Refusal::Internal)? {
                if found.is_some() {
                    // The same name in two accounts: only `name@account` can say which.
                    return Ok(None);
                }
                found = Some((account, user));
            }
        }
        Ok(found)
    }
}

/// The secret of a new token, once, and its record.
pub fn new_token(
    account: &AccountName,
    user: &UserName,
    description: String,
    now: UnixTime,
) -> (Zeroizing<String>, TokenRecord) {
    let token = Token::generate();
    let record = TokenRecord {
        id: token.id.clone(),
        account: account.clone(),
        user: user.clone(),
        description,
        secret_sha256: token.secret_sha256(),
        created_at: now,
    };
    (token.text(), record)
}
