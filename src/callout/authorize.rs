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
use super::directory::{Directory, Lookup, Member};
use super::limiter::{Limiter, Limits, Reservation};
use crate::claims::{ConnectOptions, UserPermissionLimits};
use crate::model::{AccountName, AccountRecord, UnixTime, UserKind, UserName, UserRecord};
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
    /// No such user (or token) in a tenant account.
    UnknownUser,
    /// A bare login name that users of several tenant accounts have: only `name@account`
    /// says which (refused after the same decoy hashing as an unknown user).
    Ambiguous,
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
            Refusal::Ambiguous => "ambiguous",
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
    pub account: Arc<AccountRecord>,
    pub user: Arc<UserRecord>,
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

impl AsRef<Limiter> for Authorizer {
    fn as_ref(&self) -> &Limiter {
        &self.limiter
    }
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
            Some((name, account)) => self.directory.resolve_login(&name, account.as_ref()).await,
            None => Ok(Lookup::Missing),
        };
        let (found, ambiguous) = match found {
            Ok(Lookup::Found(member)) => (Some(*member), false),
            Ok(Lookup::Missing) => (None, false),
            Ok(Lookup::Ambiguous) => (None, true),
            Err(e) => {
                tracing::warn!(error = %e, host = request.host, "cannot read the user of a login");
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
        // Hashed against the decoy like an unknown user; audited as what it is.
        let result = match result {
            Err(Refusal::UnknownUser) if ambiguous => Err(Refusal::Ambiguous),
            other => other,
        };
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
        // Checked here but charged only when wrong. A token's secret is 256 random bits, so
        // guessing in parallel gains nothing; charging every login in flight would instead
        // refuse a fleet that logs in at once with one token whenever the record read takes
        // a network round trip (the JetStream store).
        if !self.limiter.allows(login, request.host) {
            return Err(Refusal::RateLimited);
        }
        let record = self.directory.token(&token.id).await.map_err(internal)?;
        let matches = record.as_ref().is_some_and(|r| {
            constant_time_eq(token.secret_sha256().as_bytes(), r.secret_sha256.as_bytes())
        });
        let unknown = record.is_none();
        let Some(record) = record.filter(|_| matches) else {
            let Some(charge) = self.limiter.reserve(login, request.host) else {
                return Err(Refusal::RateLimited);
            };
            self.limiter.failed(charge);
            return Err(if unknown { Refusal::UnknownUser } else { Refusal::BadSecret });
        };
        self.limiter.succeeded_uncharged(login, request.host);
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
        self.admit(account, user, Some(record.id.clone()), false, request, now).await
    }

    /// The checks after the secret, and the permissions.
    async fn admit(
        &self,
        account: Arc<AccountRecord>,
        user: Arc<UserRecord>,
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
            role.as_deref(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callout::directory::MemoryDirectory;
    use crate::claims::{Permission, Permissions};
    use crate::model::{AccountKind, PasswordHash, RoleName, RoleRecord};
    use crate::token::mint as new_token;

    const OWNER: &str = "10.0.0.1";
    const ATTACKER: &str = "10.6.6.6";
    const PW: &str = "dev1-password";

    struct World {
        directory: Arc<MemoryDirectory>,
        hasher: PasswordHasher,
        master: MasterKey,
    }

    impl World {
        /// Tenant `acme` (role `dev` with templates; users dev1 with a password and the tag
        /// `site`, dev2), tenant `globex` (g1), and an ADMIN user with a password.
        async fn new() -> World {
            let master = MasterKey::generate();
            let hasher = PasswordHasher::cheap(2);
            let directory = Arc::new(MemoryDirectory::default());
            let world = World { directory, hasher, master };
            world.account("acme", AccountKind::Tenant);
            world.account("globex", AccountKind::Tenant);
            world.account("admin", AccountKind::Admin);
            world.directory.roles.lock().unwrap().push(RoleRecord::new(
                AccountName::new("acme").unwrap(),
                RoleName::new("dev").unwrap(),
                Permissions {
                    publish: Permission {
                        allow: vec!["user.{{name()}}.>".into(), "site.{{tag(site)}}.>".into()],
                        deny: vec![],
                    },
                    subscribe: Permission {
                        allow: vec!["_INBOX.>".into()],
                        deny: vec!["private.{{tag(missing)}}".into()],
                    },
                    response: None,
                },
                0,
            ));
            world.user("acme", "dev1", UserKind::Member, Some(PW)).await;
            world.user("acme", "dev2", UserKind::Member, Some("dev2-password")).await;
            world.user("globex", "g1", UserKind::Member, Some("g1-password")).await;
            world.user("admin", "root", UserKind::Admin, Some("root-password")).await;
            world
        }

        fn account(&self, name: &str, kind: AccountKind) {
            let account =
                AccountRecord::new(AccountName::new(name).unwrap(), kind, &self.master, 0);
            self.directory.accounts.lock().unwrap().push(account);
        }

        async fn user(&self, account: &str, name: &str, kind: UserKind, password: Option<&str>) {
            let mut user = UserRecord::new(
                AccountName::new(account).unwrap(),
                UserName::new(name).unwrap(),
                kind,
                &self.master,
                1,
            );
            user.role = Some(RoleName::new("dev").unwrap());
            user.tags.insert("site".into(), "berlin".into());
            if let Some(pw) = password {
                let phc = self.hasher.hash(Zeroizing::new(pw.into())).await.unwrap();
                user.password_hash = Some(PasswordHash::new(phc));
            }
            let mut users = self.directory.users.lock().unwrap();
            users.retain(|u| !(u.account == user.account && u.name == user.name));
            users.push(user);
        }

        fn edit_user(&self, name: &str, edit: impl FnOnce(&mut UserRecord)) {
            let mut users = self.directory.users.lock().unwrap();
            edit(users.iter_mut().find(|u| u.name.as_str() == name).unwrap());
        }

        async fn authorizer(&self, settings: LoginSettings) -> Authorizer {
            let directory: Arc<dyn Directory> = self.directory.clone();
            Authorizer::new(directory, self.hasher.clone(), settings).await.unwrap()
        }
    }

    fn settings(per_login: u32, per_host: u32, cache: bool) -> LoginSettings {
        LoginSettings {
            cache_ttl: if cache { Duration::from_secs(900) } else { Duration::ZERO },
            limits: Limits { per_login, per_host, window: Duration::from_secs(60) },
            ..LoginSettings::default()
        }
    }

    fn password(user: &str, pass: &str) -> ConnectOptions {
        ConnectOptions { username: user.into(), password: pass.into(), ..Default::default() }
    }

    fn token(text: &str) -> ConnectOptions {
        ConnectOptions { token: text.into(), ..Default::default() }
    }

    async fn decide(authorizer: &Authorizer, connect: &ConnectOptions, host: &str) -> Decision {
        let deadline = Instant::now() + Duration::from_secs(10);
        let request = LoginRequest { connect, host, user_nkey: "UUSER" };
        authorizer.decide(request, deadline, 1_000).await
    }

    async fn refusal(authorizer: &Authorizer, connect: &ConnectOptions, host: &str) -> Refusal {
        decide(authorizer, connect, host).await.result.expect_err("let in")
    }

    #[tokio::test]
    async fn a_right_password_is_admitted_with_its_roles_permissions_and_minted_separately() {
        let w = World::new().await;
        let a = w.authorizer(LoginSettings::default()).await;
        let decision = decide(&a, &password("dev1", PW), OWNER).await;
        assert_eq!(decision.login, "acme/dev1");
        let admitted = decision.result.unwrap();
        assert_eq!(admitted.user.name.as_str(), "dev1");
        assert_eq!(admitted.expires, 1_000 + 3600);
        let publish = &admitted.permissions.permissions.publish.allow;
        assert_eq!(publish, &vec!["user.dev1.>".to_string(), "site.berlin.>".to_string()]);
        let user_key = nkeys::KeyPair::new_user().public_key();
        let jwt = admitted.mint(&user_key, &w.master, 1_000).unwrap();
        assert_eq!(jwt.split('.').count(), 3);
    }

    #[tokio::test]
    async fn a_role_template_that_does_not_resolve_never_allows() {
        let w = World::new().await;
        w.edit_user("dev1", |u| {
            u.tags.clear();
        });
        let a = w.authorizer(LoginSettings::default()).await;
        let admitted = decide(&a, &password("dev1", PW), OWNER).await.result.unwrap();
        let p = &admitted.permissions.permissions;
        assert_eq!(p.publish.allow, vec!["user.dev1.>".to_string()], "the site subject is dropped");
        assert_eq!(
            p.subscribe.deny,
            vec![">".to_string()],
            "a deny that cannot resolve denies all"
        );
    }

    #[tokio::test]
    async fn every_refusal_has_its_category() {
        let w = World::new().await;
        w.user("acme", "off", UserKind::Member, Some("off-password")).await;
        w.edit_user("off", |u| u.active = false);
        w.directory.accounts.lock().unwrap().iter_mut().for_each(|acc| {
            if acc.name.as_str() == "globex" {
                acc.active = false;
            }
        });
        let a = w.authorizer(settings(0, 0, true)).await;
        let cases = [
            (password("", ""), Refusal::Malformed),
            (token("authd_broken"), Refusal::Malformed),
            (password(&"x".repeat(300), "pw"), Refusal::Malformed),
            (password("nobody", "whatever"), Refusal::UnknownUser),
            (password("dev1@globex", PW), Refusal::UnknownUser),
            (password("dev1", "wrong-password"), Refusal::BadSecret),
            (password("off", "off-password"), Refusal::Inactive),
            (password("g1", "g1-password"), Refusal::Inactive),
            (token("authd_aaaaaaaaaaaaaaaa_bbbb"), Refusal::UnknownUser),
        ];
        for (connect, category) in cases {
            assert_eq!(refusal(&a, &connect, OWNER).await, category, "{connect:?}");
        }
        // Wrong secrets for inactive users say bad_secret: activity is checked after the secret.
        assert_eq!(refusal(&a, &password("off", "nope"), OWNER).await, Refusal::BadSecret);
    }

    #[tokio::test]
    async fn users_outside_tenant_accounts_are_never_admitted() {
        let w = World::new().await;
        let a = w.authorizer(settings(0, 0, true)).await;
        for login in ["root@admin", "root"] {
            let before = w.hasher.verifications();
            let r = refusal(&a, &password(login, "root-password"), OWNER).await;
            assert_eq!(r, Refusal::UnknownUser, "{login}");
            assert_eq!(w.hasher.verifications(), before + 1, "only the decoy is hashed");
        }
        // Nor with a token that names one.
        let (text, mut record) = new_token(
            &AccountName::new("admin").unwrap(),
            &UserName::new("root").unwrap(),
            String::new(),
            5,
        );
        record.created_at = 5;
        w.directory.tokens.lock().unwrap().push(record);
        assert_eq!(refusal(&a, &token(&text), OWNER).await, Refusal::UnknownUser);
    }

    #[tokio::test]
    async fn a_bare_name_two_tenants_have_is_refused_as_ambiguous_and_name_at_account_works() {
        let w = World::new().await;
        w.user("globex", "dev1", UserKind::Member, Some("globex-dev1-pw")).await;
        let a = w.authorizer(settings(0, 0, true)).await;
        let before = w.hasher.verifications();
        assert_eq!(refusal(&a, &password("dev1", PW), OWNER).await, Refusal::Ambiguous);
        assert_eq!(w.hasher.verifications(), before + 1, "hashed like an unknown user");
        assert_eq!(Refusal::Ambiguous.as_str(), "ambiguous");
        let d = decide(&a, &password("dev1@acme", PW), OWNER).await;
        assert_eq!(d.result.unwrap().account.name.as_str(), "acme");
    }

    #[tokio::test]
    async fn unknown_users_cost_an_argon2_run_against_the_decoy() {
        let w = World::new().await;
        let a = w.authorizer(LoginSettings::default()).await;
        let before = w.hasher.verifications();
        assert_eq!(refusal(&a, &password("nobody", "pw"), OWNER).await, Refusal::UnknownUser);
        assert_eq!(w.hasher.verifications(), before + 1);
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_not_hashed() {
        let w = World::new().await;
        let a = w.authorizer(LoginSettings::default()).await;
        let connect = password("dev1", PW);
        let request = LoginRequest { connect: &connect, host: OWNER, user_nkey: "UUSER" };
        let decision = a.decide(request, Instant::now(), 1_000).await;
        assert_eq!(decision.result.unwrap_err(), Refusal::Expired);
        assert_eq!(w.hasher.verifications(), 0);
        // Not a failure either: the owner is not charged for the server's queue.
        for _ in 0..10 {
            let decision = a.decide(request, Instant::now(), 1_000).await;
            assert_eq!(decision.result.unwrap_err(), Refusal::Expired);
        }
        decide(&a, &connect, OWNER).await.result.unwrap();
    }

    #[tokio::test]
    async fn the_cache_skips_argon2_only_for_the_right_password_on_the_current_hash() {
        let w = World::new().await;
        let a = w.authorizer(LoginSettings::default()).await;
        assert!(!decide(&a, &password("dev1", PW), OWNER).await.result.unwrap().cached);
        let before = w.hasher.verifications();
        assert!(decide(&a, &password("dev1@acme", PW), OWNER).await.result.unwrap().cached);
        assert_eq!(w.hasher.verifications(), before, "answered from the cache");
        assert_eq!(refusal(&a, &password("dev1", "wrong"), OWNER).await, Refusal::BadSecret);
        // A new password (new hash) misses the cache; the old password no longer works.
        w.user("acme", "dev1", UserKind::Member, Some("new-password")).await;
        assert_eq!(refusal(&a, &password("dev1", PW), OWNER).await, Refusal::BadSecret);
        // A cached password of a user disabled since is refused.
        w.edit_user("dev2", |u| u.active = true);
        decide(&a, &password("dev2", "dev2-password"), OWNER).await.result.unwrap();
        w.edit_user("dev2", |u| u.active = false);
        assert_eq!(refusal(&a, &password("dev2", "dev2-password"), OWNER).await, Refusal::Inactive);
    }

    /// Defect B2: a cached password skipped the limiter, giving an attacker free guesses.
    #[tokio::test]
    async fn a_cached_password_does_not_let_a_limited_login_or_address_check_secrets() {
        let w = World::new().await;
        let a = w.authorizer(settings(5, 8, true)).await;
        decide(&a, &password("dev1", PW), OWNER).await.result.unwrap();
        for _ in 0..5 {
            assert_eq!(refusal(&a, &password("dev1", "guess"), ATTACKER).await, Refusal::BadSecret);
        }
        let before = w.hasher.verifications();
        // Even the right (cached) password is not checked from the limited address...
        assert_eq!(refusal(&a, &password("dev1", PW), ATTACKER).await, Refusal::RateLimited);
        assert_eq!(refusal(&a, &password("dev1", "guess"), ATTACKER).await, Refusal::RateLimited);
        assert_eq!(w.hasher.verifications(), before);
        // ...while the owner's address, with no failures of its own, still gets in.
        assert!(decide(&a, &password("dev1", PW), OWNER).await.result.unwrap().cached);
        // An address over its own limit checks no secret for any login, cache or not.
        for _ in 0..3 {
            let _ = refusal(&a, &password("dev2", "guess"), ATTACKER).await;
        }
        decide(&a, &password("dev2", "dev2-password"), OWNER).await.result.unwrap();
        assert_eq!(
            refusal(&a, &password("dev2", "dev2-password"), ATTACKER).await,
            Refusal::RateLimited
        );
    }

    /// Defect B2: spellings of one login each had their own allowance.
    #[tokio::test]
    async fn every_spelling_of_a_login_shares_one_allowance() {
        let w = World::new().await;
        let a = w.authorizer(settings(4, 0, false)).await;
        for login in ["dev1", "dev1@acme", "DEV1@ACME", " dev1@acme"] {
            let decision = decide(&a, &password(login, "guess"), ATTACKER).await;
            assert_eq!(decision.login, "acme/dev1");
            assert_eq!(decision.result.unwrap_err(), Refusal::BadSecret, "{login:?}");
        }
        assert_eq!(refusal(&a, &password("Dev1", PW), ATTACKER).await, Refusal::RateLimited);
        // Unknown names are normalized too.
        for login in ["ghost@acme", "GHOST@acme"] {
            assert_eq!(decide(&a, &password(login, "x"), ATTACKER).await.login, "acme/ghost");
        }
    }

    /// Defect B2: only the login was charged up front, so parallel unknown names from one
    /// address were all hashed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_from_one_address_stop_at_its_limit() {
        let w = World::new().await;
        let a = Arc::new(w.authorizer(settings(5, 50, true)).await);
        let guesses = (0..80).map(|i| {
            let a = Arc::clone(&a);
            async move { refusal(&a, &password(&format!("ghost{i}"), "x"), ATTACKER).await }
        });
        let refusals = futures::future::join_all(guesses).await;
        let limited = refusals.iter().filter(|r| **r == Refusal::RateLimited).count();
        assert_eq!(w.hasher.verifications(), 50, "hashed exactly up to the address limit");
        assert_eq!(limited, 30);
        // Another address is not affected.
        decide(&a, &password("dev1", PW), OWNER).await.result.unwrap();
    }

    /// Defect B3: `auth_token = "owner@acme:PW "` logged in with the password `PW`.
    #[tokio::test]
    async fn a_password_is_compared_exactly_as_sent_through_the_token_field() {
        let w = World::new().await;
        w.user("acme", "spacey", UserKind::Member, Some("ends-in-space ")).await;
        let a = w.authorizer(settings(0, 0, true)).await;
        let wrong = format!("dev1@acme:{PW} ");
        assert_eq!(refusal(&a, &token(&wrong), OWNER).await, Refusal::BadSecret);
        let trailing = format!(" dev1@acme:{PW}");
        decide(&a, &token(&trailing), OWNER).await.result.unwrap();
        decide(&a, &token("spacey@acme:ends-in-space "), OWNER).await.result.unwrap();
        let chopped = "spacey@acme:ends-in-space";
        assert_eq!(refusal(&a, &token(chopped), OWNER).await, Refusal::BadSecret);
    }

    /// Defect B4: five wrong guesses from anywhere locked the owner out (passwords and tokens).
    #[tokio::test]
    async fn guesses_from_one_address_do_not_keep_the_owner_out_from_another() {
        let w = World::new().await;
        let (text, record) = new_token(
            &AccountName::new("acme").unwrap(),
            &UserName::new("dev1").unwrap(),
            String::new(),
            5,
        );
        let id = record.id.clone();
        w.directory.tokens.lock().unwrap().push(record);
        let a = w.authorizer(settings(5, 50, false)).await;
        for _ in 0..5 {
            assert_eq!(refusal(&a, &password("dev1", "guess"), ATTACKER).await, Refusal::BadSecret);
            let forged = format!("authd_{id}_aaaa");
            assert_eq!(refusal(&a, &token(&forged), ATTACKER).await, Refusal::BadSecret);
        }
        assert_eq!(refusal(&a, &password("dev1", PW), ATTACKER).await, Refusal::RateLimited);
        assert_eq!(refusal(&a, &token(&text), ATTACKER).await, Refusal::RateLimited);
        decide(&a, &password("dev1", PW), OWNER).await.result.unwrap();
        let by_token = decide(&a, &token(&text), OWNER).await;
        assert_eq!(by_token.login, format!("token:{id}"));
        assert_eq!(by_token.result.unwrap().token_id.as_deref(), Some(id.as_str()));
    }

    /// Defect B4, distributed: past the login's global budget new addresses are slowed to one
    /// attempt per window, and the owner's known address keeps its allowance.
    #[tokio::test]
    async fn a_distributed_attack_slows_new_addresses_and_spares_the_owners() {
        let w = World::new().await;
        let a = w.authorizer(settings(2, 0, false)).await;
        decide(&a, &password("dev1", PW), OWNER).await.result.unwrap();
        for i in 0..crate::callout::limiter::GLOBAL_FACTOR {
            for _ in 0..2 {
                let host = format!("10.9.{i}.1");
                assert_eq!(
                    refusal(&a, &password("dev1", "guess"), &host).await,
                    Refusal::BadSecret
                );
            }
        }
        decide(&a, &password("dev1", PW), OWNER).await.result.unwrap();
        let fresh = "10.1.1.1";
        assert_eq!(refusal(&a, &password("dev1", "guess"), fresh).await, Refusal::BadSecret);
        assert_eq!(refusal(&a, &password("dev1", PW), fresh).await, Refusal::RateLimited);
        decide(&a, &password("dev1", PW), "10.1.1.2").await.result.unwrap();
    }
}
