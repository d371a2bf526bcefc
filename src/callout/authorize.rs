//! The callout decision: who is this, may they in, and with which permissions. Plain async
//! code over a [`Directory`], no NATS, so unit tests drive it with records in memory.
//!
//! [`Authorizer::decide`] decides; [`Admitted::mint`] is the separate step that signs the
//! user JWT for an admitted login. The order of checks:
//!
//! 1. read the credential (never trimming secrets) and normalize the login to its canonical
//!    key (`account/name` when it resolves to a tenant user, so `name`, `name@acme`,
//!    `NAME@ACME` and ` name@acme` count as one login);
//! 2. the brute-force limits ([`super::limiter`]): over a limit, no secret is checked at all,
//!    neither through the cache nor argon2;
//! 3. the secret: the verified-password cache, else argon2 against the stored hash (or a
//!    decoy hash for unknown users, so they cost the same), charged to the limiter when its
//!    turn to hash comes; a request whose turn comes after its deadline is not hashed;
//! 4. activity (user, account), only after the secret so a guess learns nothing from it;
//! 5. the role's permissions, templates resolved for this connection (a template that does
//!    not resolve never allows).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::cache::VerifiedCache;
use super::credential::{self, Credential, Token};
use super::directory::{Directory, Member};
use super::limiter::{Limiter, Limits, Reservation};
use crate::claims::{ConnectOptions, UserPermissionLimits};
use crate::model::{
    AccountName, AccountRecord, TokenRecord, UnixTime, UserKind, UserName, UserRecord,
};
use crate::password::{Gated, PasswordHasher};
use crate::policy;
use crate::trust::{self, TrustError};
use crate::vault::MasterKey;

/// Longest login name accepted (`name@account` of two 64-character names, and then some).
pub const MAX_LOGIN_LEN: usize = 256;

/// Login tuning.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Lifetime of minted user JWTs (a user's own `jwt_ttl_secs` wins when shorter).
    pub jwt_ttl: Duration,
    /// How long a verified password is remembered (0: never).
    pub cache_ttl: Duration,
    /// Brute-force limits.
    pub limits: Limits,
}

/// The old name of [`LoginSettings`], kept while `src/cli` still builds it under that name.
pub type CalloutSettings = LoginSettings;

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
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
    /// No such user (or token) in a tenant account, or a name that fits users of several.
    UnknownUser,
    /// Wrong password or token.
    BadSecret,
    /// The user or its account is deactivated (or the user is not a member).
    Inactive,
    /// Over a brute-force limit for this login or address: no secret was checked.
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

/// An admitted login, not yet minted.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub account: AccountRecord,
    pub user: UserRecord,
    /// The role's permissions, templates resolved for this connection.
    pub permissions: UserPermissionLimits,
    /// When the minted JWT expires.
    pub expires: UnixTime,
    /// The API token used, if any.
    pub token_id: Option<String>,
    /// Whether argon2 was skipped thanks to the cache.
    pub cached: bool,
}

impl Admitted {
    /// The user JWT for this login: issued by the account's signing key to `user_nkey`.
    ///
    /// # Errors
    /// Key failures.
    pub fn mint(
        &self,
        user_nkey: &str,
        master: &MasterKey,
        now: UnixTime,
    ) -> Result<String, TrustError> {
        trust::user_jwt(
            &self.account,
            user_nkey,
            self.user.name.as_str(),
            self.permissions.clone(),
            Some(self.expires),
            master,
            now,
        )
    }
}

/// The outcome of one request.
#[derive(Debug)]
pub struct Decision {
    /// The login as counted (canonical key, or `token:<id>`), for audit; never a secret.
    pub login: String,
    pub result: Result<Admitted, Refusal>,
}

/// What a decision reads from one authorization request.
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'a> {
    /// The CONNECT options (credentials).
    pub connect: &'a ConnectOptions,
    /// The client's address as the server saw it.
    pub host: &'a str,
    /// The key the minted JWT will be issued to (`{{subject()}}` in templates).
    pub user_nkey: &'a str,
}

/// Decides logins; shared by every in-flight request.
pub struct Authorizer {
    directory: Arc<dyn Directory>,
    hasher: PasswordHasher,
    cache: VerifiedCache,
    limiter: Limiter,
    settings: LoginSettings,
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

fn internal<E>(_: E) -> Refusal {
    Refusal::Internal
}

impl Authorizer {
    /// An authorizer over `directory`.
    ///
    /// # Errors
    /// If the decoy hash cannot be made.
    pub async fn new(
        directory: Arc<dyn Directory>,
        hasher: PasswordHasher,
        settings: LoginSettings,
    ) -> Result<Self, crate::password::PasswordError> {
        let decoy = hasher.hash(Token::generate().secret).await?;
        Ok(Authorizer {
            directory,
            hasher,
            cache: VerifiedCache::new(settings.cache_ttl),
            limiter: Limiter::new(settings.limits),
            settings,
            decoy: Arc::new(decoy),
        })
    }

    /// Decides one login. `deadline` is when the server stops waiting: a password whose turn
    /// to hash comes later is not hashed ([`Refusal::Expired`]).
    pub async fn decide(
        &self,
        request: LoginRequest<'_>,
        deadline: Instant,
        now: UnixTime,
    ) -> Decision {
        let Some(credential) = credential::parse(request.connect) else {
            return Decision { login: String::new(), result: Err(Refusal::Malformed) };
        };
        if credential.login().len() > MAX_LOGIN_LEN {
            return Decision { login: String::new(), result: Err(Refusal::Malformed) };
        }
        match credential {
            Credential::Password { login, password } => {
                self.password_login(&login, password, request, deadline, now).await
            }
            Credential::Token(token) => {
                let login = format!("token:{}", token.id);
                let result = self.token_login(&login, &token, request, now).await;
                Decision { login, result }
            }
        }
    }

    async fn password_login(
        &self,
        presented: &str,
        password: Zeroizing<String>,
        request: LoginRequest<'_>,
        deadline: Instant,
        now: UnixTime,
    ) -> Decision {
        let found = match credential::login_parts(presented) {
            Some((name, account)) => self.directory.find_login(&name, account.as_ref()).await,
            None => Ok(None),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the user of a login");
                let login = credential::login_key(presented);
                return Decision { login, result: Err(Refusal::Internal) };
            }
        };
        // One key per user however it was spelled, so no spelling gets its own allowance.
        let login = match &found {
            Some((account, user)) => format!("{}/{}", account.name, user.name),
            None => credential::login_key(presented),
        };
        let result = self.check_password(&login, found, password, request, deadline, now).await;
        Decision { login, result }
    }

    async fn check_password(
        &self,
        login: &str,
        found: Option<Member>,
        password: Zeroizing<String>,
        request: LoginRequest<'_>,
        deadline: Instant,
        now: UnixTime,
    ) -> Result<Admitted, Refusal> {
        let host = request.host;
        // Before the cache too: over a limit, no secret is checked at all.
        if !self.limiter.allows(login, host) {
            return Err(Refusal::RateLimited);
        }
        let phc = found
            .as_ref()
            .and_then(|(_, u)| u.password_hash.as_ref().map(|h| h.as_str().to_string()));
        // A cache hit needs the right password for the current hash.
        let cached = phc.as_deref().is_some_and(|phc| self.cache.hit(phc, &password));
        if cached {
            self.limiter.succeeded_uncharged(login, host);
        } else {
            let target = phc.clone().unwrap_or_else(|| self.decoy.to_string());
            let gate = || self.limiter.reserve(login, host);
            let (ok, reservation): (bool, Reservation) = match self
                .hasher
                .verify_gated(password.clone(), target, deadline, gate)
                .await
                .map_err(internal)?
            {
                Gated::Checked(ok, reservation) => (ok, reservation),
                Gated::Expired => return Err(Refusal::Expired),
                Gated::Refused => return Err(Refusal::RateLimited),
            };
            match (&found, &phc, ok) {
                (Some(_), Some(phc), true) => {
                    self.limiter.succeeded(reservation);
                    self.cache.insert(phc, &password);
                }
                (None, _, _) => {
                    self.limiter.failed(reservation);
                    return Err(Refusal::UnknownUser);
                }
                _ => {
                    self.limiter.failed(reservation);
                    return Err(Refusal::BadSecret);
                }
            }
        }
        let (account, user) = found.expect("verified against a stored hash");
        self.admit(account, user, None, cached, request, now).await
    }

    async fn token_login(
        &self,
        login: &str,
        token: &Token,
        request: LoginRequest<'_>,
        now: UnixTime,
    ) -> Result<Admitted, Refusal> {
        // SHA-256 is cheap: charged at once, no queue to wait in.
        let Some(reservation) = self.limiter.reserve(login, request.host) else {
            return Err(Refusal::RateLimited);
        };
        let record = self.directory.token(&token.id).await.map_err(internal)?;
        let matches = record.as_ref().is_some_and(|r| {
            constant_time_eq(token.secret_sha256().as_bytes(), r.secret_sha256.as_bytes())
        });
        let unknown = record.is_none();
        let Some(record) = record.filter(|_| matches) else {
            self.limiter.failed(reservation);
            return Err(if unknown { Refusal::UnknownUser } else { Refusal::BadSecret });
        };
        self.limiter.succeeded(reservation);
        let (account, user) = self
            .directory
            .member(&record.account, &record.user)
            .await
            .map_err(internal)?
            .ok_or(Refusal::UnknownUser)?;
        // A token left over from a user deleted and created again is not the new user's.
        if record.created_at < user.created_at {
            return Err(Refusal::UnknownUser);
        }
        self.admit(account, user, Some(record.id), false, request, now).await
    }

    /// The checks after the secret, and the permissions.
    async fn admit(
        &self,
        account: AccountRecord,
        user: UserRecord,
        token_id: Option<String>,
        cached: bool,
        request: LoginRequest<'_>,
        now: UnixTime,
    ) -> Result<Admitted, Refusal> {
        // Checked after the secret, so an attacker learns nothing from which check failed.
        if !account.active || !user.active || user.kind != UserKind::Member {
            return Err(Refusal::Inactive);
        }
        // Leftovers of a delete that raced a create must not come back to life in a new
        // account or user of the same name.
        if user.created_at < account.created_at {
            return Err(Refusal::UnknownUser);
        }
        let role = self.directory.role_of(&user).await.map_err(internal)?;
        let permissions = policy::connection_permissions(
            &user,
            role.as_ref(),
            account.name.as_str(),
            request.user_nkey,
        );
        let ttl = self.settings.jwt_ttl.as_secs() as i64;
        let expires = now + user.jwt_ttl_secs.map_or(ttl, |own| own.min(ttl));
        Ok(Admitted { account, user, permissions, expires, token_id, cached })
    }

    /// Whether an admitted login is still valid now: the same user and account, active, with
    /// the same password hash, and its token still there. Called after the session is
    /// recorded, so a revocation either shows here or finds the session to kick.
    pub async fn still_valid(&self, admitted: &Admitted) -> bool {
        let Ok(Some((account, user))) =
            self.directory.member(&admitted.account.name, &admitted.user.name).await
        else {
            return false;
        };
        let token_ok = match &admitted.token_id {
            Some(id) => matches!(self.directory.token(id).await, Ok(Some(_))),
            None => true,
        };
        token_ok
            && account.active
            && user.active
            && account.public_key() == admitted.account.public_key()
            && user.identity.public == admitted.user.identity.public
            && user.password_hash == admitted.user.password_hash
    }

    /// Whether `account/user` may still be connected (active, both exist).
    pub async fn user_active(&self, account: &AccountName, user: &UserName) -> Option<bool> {
        let (account, user) = self.directory.member(account, user).await.ok()??;
        Some(account.active && user.active)
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
