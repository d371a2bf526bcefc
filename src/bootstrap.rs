//! `init`: creates the trust chain and topology once, and writes what the server and the
//! operators need (server config, operator JWT, admin and sentinel creds).
//!
//! Two directories with different secrecy: the data dir holds the store (every seed sealed)
//! and, by default, the master key; the out dir holds files meant to be handed out, creds
//! included. Keeping creds out of the data dir means a backup of the data dir holds no
//! usable secret without the master key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::authority::{self, Authority, AuthorityError};
use crate::claims::{Export, ExportType, Import, ResponseType};
use crate::keys::{KeyRole, SealedKey};
use crate::model::{
    AccountKind, AccountName, AccountRecord, OperatorRecord, UnixTime, UserKind, UserName,
    UserRecord,
};
use crate::names::{
    ADMIN_ACCOUNT, ADMIN_USER, API_PREFIX, AUTH_ACCOUNT, SENTINEL_USER, SERVICE_USER, SYS_ACCOUNT,
    SYS_SERVICES,
};
use crate::server_config::{self, ConfigInputs, ServerSettings, ServerTls};
use crate::store::choice::{self, ChoiceError, StoreChoice, StoreRequest};
use crate::store::sled::{self, OpenMode, SledStore, StoreLock};
use crate::store::{Batch, Db, Expect, Op, StoreError, Tree, OPERATOR_KEY};
use crate::vault::{self, Access, Existing, MasterKey, MasterKeySource, VaultError};

/// The file the generated config includes at its end (see `nats-config/local/`).
pub const LOCAL_CONFIG: &str = "local.conf";

/// The server's JetStream store dir that a new `local.conf` names in JetStream mode, in the
/// out dir: server state like the resolver dir, not nats-authd's (a copy of the data dir for
/// another instance must not carry a server's stream files along).
pub const JETSTREAM_DIR: &str = "jetstream";

/// What `init` puts into a new `local.conf`: nothing but how to use it.
const LOCAL_CONFIG_START: &str = "\
# Your nats-server settings. nats-authd created this file once and never writes it again;
# nats-server.conf (rewritten by every `init` and `up`) includes it at its end.
# Ready-made snippets: nats-config/local/ in the nats-authd repository.
";

/// Why `init` or opening the data dir failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The data dir's store choice is unreadable, or the request is contradictory.
    #[error(transparent)]
    Choice(#[from] ChoiceError),
    /// `init` was asked for another store than the data dir already runs on. Nothing was
    /// changed: a deployment's store is chosen once.
    #[error(
        "{} runs on the {have} store; `init` cannot change it to {asked} (leave out --store and          --replicas to keep it, or init a new data dir)",
        data_dir.display()
    )]
    StoreConflict { data_dir: PathBuf, have: StoreChoice, asked: String },
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// The data dir holds a store that is damaged or incomplete. Nothing was changed: `init`
    /// will not build a new trust chain over it and `serve` will not run on it.
    #[error(
        "the store in {} is damaged or incomplete: {damage}. nats-authd neither serves it nor creates a \
         new trust chain over it (that would lose every account and user). Restore {} from a \
         backup; or, to start over with a new operator and no accounts, move {} away \
         yourself and run `nats-authd init` again",
        data_dir.join("store").display(), data_dir.display(), data_dir.display()
    )]
    Damaged { data_dir: PathBuf, damage: Damage },
    /// A `--server-tls-*` file cannot be used.
    #[error("cannot use TLS file {path}: {source}")]
    TlsFile { path: PathBuf, source: std::io::Error },
    /// `local.conf` has its own top-level `tls` block besides the `--server-tls-*` flags.
    #[error(
        "{} has its own top-level tls block, and nats-server would use it instead of the one \
         from --server-tls-* (the last tls block replaces the first whole; with parts missing, \
         every TLS handshake fails). Use one or the other: remove the block from {}, or drop \
         the --server-tls-* flags",
        local.display(), local.display()
    )]
    TlsConflict { local: PathBuf },
}

/// What is wrong with a damaged store (see [`BootstrapError::Damaged`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// The store dir is empty or gone, but the master key `init` made beside it is still in
    /// the data dir: the store was there and has been removed.
    #[error("the store dir is empty or missing, but its master key {} is still there", .0.display())]
    StoreGone(PathBuf),
    /// The store dir has files (lock file, sled's `conf`, `blobs`, `snap.*`, ...) but not
    /// sled's database file, which holds the records.
    #[error("the store dir has files but no `db` file (sled's records)")]
    NoDbFile,
    /// sled opens the store but its schema version is missing or unreadable.
    #[error("the store has no readable schema version")]
    NoSchema,
    /// The record that checks the master key is missing.
    #[error("the store has no master-key check record")]
    NoKeyCheck,
    /// The operator record is missing.
    #[error("the store has no operator record")]
    NoOperator,
}

/// Where things live on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Store and (by default) master key; secrets here are sealed.
    pub data_dir: PathBuf,
    /// Server config, resolver dir, operator JWT, creds files.
    pub out_dir: PathBuf,
}

/// The sled store inside a data dir.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// The master key file used when none is given.
pub fn default_master_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

impl Layout {
    /// The sled store.
    pub fn store_dir(&self) -> PathBuf {
        store_dir(&self.data_dir)
    }
    /// The master key file used when none is given.
    pub fn default_master_key_file(&self) -> PathBuf {
        default_master_key_file(&self.data_dir)
    }
    /// The nats-server config.
    pub fn config_file(&self) -> PathBuf {
        self.out_dir.join("nats-server.conf")
    }
    /// The operator's own server settings, included by the config and never overwritten.
    pub fn local_config_file(&self) -> PathBuf {
        self.out_dir.join(LOCAL_CONFIG)
    }
    /// The operator JWT (public).
    pub fn operator_jwt_file(&self) -> PathBuf {
        self.out_dir.join("operator.jwt")
    }
    /// The server's account JWT dir.
    pub fn resolver_dir(&self) -> PathBuf {
        self.out_dir.join("jwt")
    }
    /// Creds of the first admin.
    pub fn admin_creds(&self) -> PathBuf {
        self.out_dir.join("admin.creds")
    }
    /// Creds of the sentinel, handed to clients that log in through the callout.
    pub fn sentinel_creds(&self) -> PathBuf {
        self.out_dir.join("sentinel.creds")
    }
}

/// Where a first `init` builds the store before renaming it into place, so that an
/// interrupted `init` leaves no half-made store (only this dir, which the next `init` removes).
fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store.new")
}

/// Where `init` copies an existing store to check it without touching the original.
fn check_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store.check")
}

/// What a data dir holds, judged from its files alone (nothing is opened, created or written).
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// No store and no trace of one: `init` may create a trust chain.
    Nothing,
    /// A store with its database file; whether its records are whole is checked on opening.
    Store,
    /// A store that is visibly broken.
    Damaged(Damage),
}

/// A store exists if its dir holds anything at all (a lock file, sled's `conf`, `blobs`,
/// `snap.*` or `db`), or if the master key file `init` made in the data dir is there with no
/// interrupted first `init` to explain it. Only a data dir with neither is free for a new
/// trust chain.
fn survey(data_dir: &Path) -> Result<Found, BootstrapError> {
    let store = store_dir(data_dir);
    if sled::holds_anything(&store)? {
        if !store.join(sled::DB_FILE).exists() {
            return Ok(Found::Damaged(Damage::NoDbFile));
        }
        return Ok(Found::Store);
    }
    let key = default_master_key_file(data_dir);
    if key.exists() && !staging_dir(data_dir).exists() {
        return Ok(Found::Damaged(Damage::StoreGone(key)));
    }
    Ok(Found::Nothing)
}

fn damaged(data_dir: &Path, damage: Damage) -> BootstrapError {
    BootstrapError::Damaged { data_dir: data_dir.to_path_buf(), damage }
}

/// Where the master key comes from; the first that is set wins.
#[derive(Clone, Default)]
pub struct MasterKeyOptions {
    /// The key text (NATS_AUTHD_MASTER_KEY).
    pub inline: Option<Zeroizing<String>>,
    /// A key file (--master-key-file).
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for MasterKeyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyOptions")
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
            .field("file", &self.file)
            .finish()
    }
}

impl MasterKeyOptions {
    /// The source to use for the store in `data_dir`.
    pub fn source(&self, data_dir: &Path) -> MasterKeySource {
        match (&self.inline, &self.file) {
            (Some(text), _) => MasterKeySource::Inline(text.clone()),
            (None, Some(path)) => MasterKeySource::File(path.clone()),
            (None, None) => MasterKeySource::File(default_master_key_file(data_dir)),
        }
    }
}

/// What `init` is told.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub layout: Layout,
    pub master_key: MasterKeyOptions,
    pub server: ServerSettings,
    /// Name in the operator JWT.
    pub operator_name: String,
    /// Seal callout traffic with an xkey (on by default).
    pub xkey: bool,
}

/// What `init` did.
#[derive(Debug)]
pub struct InitOutcome {
    /// A new trust chain was made (false: the existing one was kept).
    pub created: bool,
    /// The master key file written by this run, if any.
    pub created_master_key: Option<PathBuf>,
    pub operator_public_key: String,
    pub outputs: Outputs,
    pub authority: Authority,
    /// The store the deployment runs on.
    pub store: StoreChoice,
}

/// Files written for the server and the operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    pub config: PathBuf,
    pub operator_jwt: PathBuf,
    pub resolver_dir: PathBuf,
    pub admin_creds: PathBuf,
    pub sentinel_creds: PathBuf,
}

/// Creates the trust chain if the data dir has none, then (re)writes the outputs.
///
/// Re-running it changes no key: an existing store is opened with its master key and only the
/// output files are written again (fresh JWTs, same keys). A store that exists but is damaged
/// or incomplete is refused, and left exactly as it was found.
///
/// # Errors
/// [`BootstrapError::Damaged`] for a damaged store, [`VaultError::MissingMasterKey`] /
/// [`VaultError::WrongMasterKey`] for an existing store without its key (nothing is changed),
/// [`StoreError::Locked`] if the service is running on it, I/O errors writing outputs.
pub async fn init(opts: &InitOptions, now: UnixTime) -> Result<InitOutcome, BootstrapError> {
    init_with(opts, &InitExtras::default(), now).await
}

/// What `init` may be told beyond [`InitOptions`]: flags that only the command line sets.
#[derive(Debug, Clone, Default)]
pub struct InitExtras {
    /// A client TLS block for the server config (`--server-tls-*`).
    pub tls: Option<ServerTls>,
    /// The store of a new data dir (`--store`, `--replicas`); on an existing one it must
    /// agree with the choice recorded there.
    pub store: StoreRequest,
}

/// [`init`] with [`InitExtras`].
///
/// # Errors
/// As [`init`]; [`BootstrapError::TlsFile`] for a TLS file that is not there,
/// [`BootstrapError::TlsConflict`] if `local.conf` sets TLS too,
/// [`BootstrapError::StoreConflict`] when `extras.store` disagrees with an existing data
/// dir's choice, [`BootstrapError::Choice`] for a contradictory request.
pub async fn init_with(
    opts: &InitOptions,
    extras: &InitExtras,
    now: UnixTime,
) -> Result<InitOutcome, BootstrapError> {
    let layout = &opts.layout;
    // Before anything is made: a typo in a path must not leave a half-written out dir.
    let tls = absolute_tls(extras.tls.as_ref()).await?;
    let store = extras.store;
    let source = opts.master_key.source(&layout.data_dir);
    let (created, created_master_key, store) = match survey(&layout.data_dir)? {
        Found::Damaged(damage) => return Err(damaged(&layout.data_dir, damage)),
        Found::Nothing => {
            let choice = store.for_new()?;
            (true, create(opts, &choice, &source, now).await?, choice)
        }
        Found::Store => {
            let have = choice::current(&layout.data_dir)?;
            if !store.agrees_with(&have) {
                let asked = match (store.backend, store.replicas) {
                    (Some(b), Some(r)) => format!("{b} with {r} replicas"),
                    (Some(b), None) => b.to_string(),
                    (None, Some(r)) => format!("{r} replicas"),
                    (None, None) => unreachable!("an empty request agrees with anything"),
                };
                let data_dir = layout.data_dir.clone();
                return Err(BootstrapError::StoreConflict { data_dir, have, asked });
            }
            (false, None, have)
        }
    };
    // A store this run did not make is checked on a copy first: sled rewrites its files
    // whenever it opens them, and a damaged store must be left byte for byte as it was found,
    // for whoever recovers it.
    let authority = open_store_dir(&layout.data_dir, &source, !created).await?;
    let outputs =
        write_outputs_with_tls(&authority, layout, &opts.server, tls.as_ref(), now).await?;
    let operator_public_key = authority.operator().await?.identity.public;
    Ok(InitOutcome { created, created_master_key, operator_public_key, outputs, authority, store })
}

/// The store a data dir's deployment runs on (sled when `init` recorded none).
///
/// # Errors
/// [`BootstrapError::Choice`] when the record is unreadable.
pub fn store_choice(data_dir: &Path) -> Result<StoreChoice, BootstrapError> {
    Ok(choice::current(data_dir)?)
}

/// Makes a new trust chain in an empty data dir: the master key if it is to be a new file,
/// then the store, built in a staging dir and renamed into place once complete. Returns the
/// master key file it created, if any.
async fn create(
    opts: &InitOptions,
    store: &StoreChoice,
    source: &MasterKeySource,
    now: UnixTime,
) -> Result<Option<PathBuf>, BootstrapError> {
    let data_dir = opts.layout.data_dir.clone();
    let staging = staging_dir(&data_dir);
    create_private_dir(&data_dir)?;
    // The staging dir exists before the key does, so that a key with no store beside it
    // means "the store was removed" unless a staging dir says "init was interrupted".
    blocking(&staging, {
        let staging = staging.clone();
        move || {
            if staging.exists() {
                // Left by an interrupted init: never renamed into place, so never used.
                std::fs::remove_dir_all(&staging)?;
            }
            private_dir(&staging)?;
            vault::sync_parent(&staging)
        }
    })
    .await?;
    let mut created_master_key = None;
    let master = match source {
        MasterKeySource::File(path) if !path.exists() => {
            let key = MasterKey::create_file(path)?;
            // Said now, not only in the summary: if a later step fails, the key still exists.
            tracing::warn!(path = %path.display(), "created the master key; back it up apart from the data dir");
            created_master_key = Some(path.clone());
            key
        }
        other => other.load()?,
    };
    {
        let db = Db::new(Arc::new(open_store(staging.clone(), OpenMode::CreateIfMissing).await?));
        let jetstream = store.is_jetstream();
        db.commit(topology(&master, &opts.operator_name, opts.xkey, jetstream, now)).await?;
        // Dropped here: the store is closed (and its lock released) before it is moved.
    }
    // Before the store is renamed into place (which makes the data dir initialized), so an
    // initialized data dir always has its choice; an interrupted init rewrites it.
    blocking(&choice::file(&data_dir), {
        let (data_dir, store) = (data_dir.clone(), store.clone());
        move || choice::write(&data_dir, &store)
    })
    .await?;
    let store = store_dir(&data_dir);
    blocking(&store, {
        let store = store.clone();
        move || {
            if store.exists() {
                // Empty (survey found nothing in it); rename does not replace a dir.
                std::fs::remove_dir(&store)?;
            }
            std::fs::rename(&staging, &store)?;
            vault::sync_parent(&store)
        }
    })
    .await?;
    Ok(created_master_key)
}

/// Opens an initialized data dir for `serve`.
///
/// # Errors
/// [`StoreError::NotInitialized`] where `init` never ran, [`BootstrapError::Damaged`] for a
/// damaged store, [`StoreError::Locked`], master-key errors.
pub async fn open(
    data_dir: &Path,
    master_key: &MasterKeyOptions,
) -> Result<Authority, BootstrapError> {
    // Checked before the key is read, so a mistyped path says "run init", not "no key".
    match survey(data_dir)? {
        Found::Nothing => {
            let path = data_dir.display().to_string();
            Err(StoreError::NotInitialized { path }.into())
        }
        Found::Damaged(damage) => Err(damaged(data_dir, damage)),
        Found::Store => open_store_dir(data_dir, &master_key.source(data_dir), false).await,
    }
}

/// Opens the store of `data_dir` (which has one), checks that its records are whole, then
/// that `source` is its key. With `check_copy`, the records are first checked on a copy.
async fn open_store_dir(
    data_dir: &Path,
    source: &MasterKeySource,
    check_copy: bool,
) -> Result<Authority, BootstrapError> {
    let dir = store_dir(data_dir);
    // Taken first and held throughout, so no other process writes while we copy or check.
    let lock = tokio::task::spawn_blocking(move || StoreLock::take(&dir))
        .await
        .map_err(StoreError::backend)??;
    if check_copy {
        if let Some(damage) = damage_in_copy(&lock, data_dir).await? {
            return Err(damaged(data_dir, damage));
        }
    }
    let store = tokio::task::spawn_blocking(move || lock.open(OpenMode::MustExist))
        .await
        .map_err(StoreError::backend)?;
    let db = match store {
        Ok(store) => Db::new(Arc::new(store)),
        Err(StoreError::Corrupt { tree: Tree::Meta, .. }) => {
            return Err(damaged(data_dir, Damage::NoSchema))
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(damage) = damage_in(&db).await? {
        return Err(damaged(data_dir, damage));
    }
    let master = source.load()?;
    Ok(Authority::open(db, master).await?)
}

/// Records every trust chain has; their absence means the store lost data.
async fn damage_in(db: &Db) -> Result<Option<Damage>, BootstrapError> {
    if db.meta(authority::KEY_CHECK).await?.is_none() {
        return Ok(Some(Damage::NoKeyCheck));
    }
    if db.store().get(Tree::Operator, OPERATOR_KEY).await?.is_none() {
        return Ok(Some(Damage::NoOperator));
    }
    Ok(None)
}

/// Copies the locked store next to it (same file system and permissions), opens the copy and
/// looks for damage there; the copy is removed afterwards.
async fn damage_in_copy(
    lock: &StoreLock,
    data_dir: &Path,
) -> Result<Option<Damage>, BootstrapError> {
    let copy = check_dir(data_dir);
    let (from, to) = (lock.dir().to_path_buf(), copy.clone());
    blocking(&copy, move || {
        if to.exists() {
            std::fs::remove_dir_all(&to)?;
        }
        copy_store(&from, &to)
    })
    .await?;
    let found = match open_store(copy.clone(), OpenMode::MustExist).await {
        Ok(store) => damage_in(&Db::new(Arc::new(store))).await,
        Err(StoreError::Corrupt { tree: Tree::Meta, .. }) => Ok(Some(Damage::NoSchema)),
        Err(e) => Err(e.into()),
    };
    let removed = blocking(&copy, {
        let copy = copy.clone();
        move || std::fs::remove_dir_all(&copy)
    })
    .await;
    let found = found?;
    removed?;
    Ok(found)
}

/// Copies a store dir, its lock file aside, into a new private dir `to`.
fn copy_store(from: &Path, to: &Path) -> std::io::Result<()> {
    private_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_store(&entry.path(), &target)?;
        } else if entry.file_name() != sled::LOCK_FILE {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, BootstrapError> {
    std::fs::read_to_string(path)
        .map_err(|source| BootstrapError::Write { path: path.to_path_buf(), source })
}

/// Runs file-system work on the blocking pool; an I/O error is reported against `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, BootstrapError> {
    let err = |source| BootstrapError::Write { path: path.to_path_buf(), source };
    tokio::task::spawn_blocking(work).await.map_err(|e| err(std::io::Error::other(e)))?.map_err(err)
}

fn account(name: &str, kind: AccountKind, master: &MasterKey, now: UnixTime) -> AccountRecord {
    let name = AccountName::new(name).expect("built-in account names are valid");
    AccountRecord::new(name, kind, master, now)
}

fn user(
    account: &AccountRecord,
    name: &str,
    kind: UserKind,
    master: &MasterKey,
    now: UnixTime,
) -> UserRecord {
    let name = UserName::new(name).expect("built-in user names are valid");
    UserRecord::new(account.name.clone(), name, kind, master, now)
}

/// SYS's export of server request `subject`: every server answers the claims API, so those
/// answers must all reach AUTH (see [`crate::names::SYS_FAN_OUT_SERVICES`]).
fn sys_export(subject: &str) -> Export {
    let mut export = Export::service(subject, subject);
    if crate::names::SYS_FAN_OUT_SERVICES.contains(&subject) {
        export.response_type = Some(ResponseType::Stream);
        export.response_threshold = crate::names::SYS_FAN_OUT_THRESHOLD_NS;
    }
    export
}

/// Every record of a fresh trust chain, as one batch: operator, SYS/AUTH/ADMIN, the service,
/// sentinel and admin users, and the master-key check. One batch, so a crash mid-init leaves
/// nothing half-made. With `jetstream`, AUTH may use JetStream without limits: the shared
/// store's stream lives there, where only the service user (which bypasses the callout) can
/// reach it. Fixed at init, so AUTH's JWT still never changes as tenants come and go.
fn topology(
    master: &MasterKey,
    operator_name: &str,
    xkey: bool,
    jetstream: bool,
    now: UnixTime,
) -> Batch {
    let mut sys = account(SYS_ACCOUNT, AccountKind::System, master, now);
    sys.exports = SYS_SERVICES.iter().map(|s| sys_export(s)).collect();

    let mut auth = account(AUTH_ACCOUNT, AccountKind::Auth, master, now);
    auth.description = "nats-authd callout and management service".into();
    auth.imports = SYS_SERVICES.iter().map(|s| Import::service(s, s, sys.public_key())).collect();
    let api = format!("{API_PREFIX}.>");
    auth.exports = vec![Export::service("nats-authd API", &api), {
        // Stream, or service discovery from ADMIN sees only the first responder (docs/nats-server-facts.md).
        let mut srv = Export::service("micro discovery", "$SRV.>");
        srv.response_type = Some(ResponseType::Stream);
        srv
    }];
    let events = format!("{API_PREFIX}.events.>");
    auth.exports
        .push(Export { kind: ExportType::Stream, ..Export::service("nats-authd events", &events) });
    if xkey {
        auth.xkey = Some(SealedKey::generate(KeyRole::Curve, master));
    }
    if jetstream {
        // -1: unlimited; a non-zero memory or disk limit is what turns JetStream on for an
        // account.
        auth.limits.memory_storage = -1;
        auth.limits.disk_storage = -1;
        auth.limits.streams = -1;
        auth.limits.consumer = -1;
    }

    let mut admin = account(ADMIN_ACCOUNT, AccountKind::Admin, master, now);
    admin.description = "operators of nats-authd".into();
    admin.imports = [("nats-authd API", api.as_str()), ("micro discovery", "$SRV.>")]
        .iter()
        .map(|(name, subject)| Import {
            share: true,
            ..Import::service(name, subject, auth.public_key())
        })
        .collect();
    admin.imports.push(Import {
        kind: ExportType::Stream,
        ..Import::service("nats-authd events", &events, auth.public_key())
    });

    let operator = OperatorRecord {
        name: operator_name.to_string(),
        identity: SealedKey::generate(KeyRole::Operator, master),
        signing_key: SealedKey::generate(KeyRole::OperatorSigning, master),
        system_account: sys.public_key().to_string(),
        created_at: now,
        updated_at: now,
    };

    let mut batch = Batch::new();
    batch.push(Op::Put {
        tree: Tree::Meta,
        key: authority::KEY_CHECK.into(),
        value: authority::key_check_value(master),
        expect: Expect::Absent,
    });
    batch.create(&operator);
    for u in [
        user(&auth, SERVICE_USER, UserKind::Service, master, now),
        user(&auth, SENTINEL_USER, UserKind::Sentinel, master, now),
        user(&admin, ADMIN_USER, UserKind::Admin, master, now),
    ] {
        batch.create(&u);
    }
    for a in [&sys, &auth, &admin] {
        batch.create(a);
    }
    batch
}

/// Writes the server config, operator JWT and the admin and sentinel creds, all signed now.
///
/// # Errors
/// Store, key or file-system failures.
pub async fn write_outputs(
    authority: &Authority,
    layout: &Layout,
    settings: &ServerSettings,
    now: UnixTime,
) -> Result<Outputs, BootstrapError> {
    write_outputs_with_tls(authority, layout, settings, None, now).await
}

/// [`write_outputs`] with a client TLS block in the server config.
///
/// # Errors
/// As [`write_outputs`]; [`BootstrapError::TlsFile`] for a TLS file that is not there,
/// [`BootstrapError::TlsConflict`] if `local.conf` sets TLS too (nothing is written then).
pub async fn write_outputs_with_tls(
    authority: &Authority,
    layout: &Layout,
    settings: &ServerSettings,
    tls: Option<&ServerTls>,
    now: UnixTime,
) -> Result<Outputs, BootstrapError> {
    let tls = absolute_tls(tls).await?;
    let outputs = Outputs {
        config: layout.config_file(),
        operator_jwt: layout.operator_jwt_file(),
        resolver_dir: layout.resolver_dir(),
        admin_creds: layout.admin_creds(),
        sentinel_creds: layout.sentinel_creds(),
    };
    let system_account = authority.operator().await?.system_account;
    let operator_jwt = authority.operator_jwt(now).await?;
    let mut preload = Vec::new();
    for name in [SYS_ACCOUNT, AUTH_ACCOUNT, ADMIN_ACCOUNT] {
        let account = authority.account(&AccountName::new(name).expect("valid")).await?;
        let jwt = authority.account_jwt(&account, now).await?;
        preload.push((account.public_key().to_string(), jwt));
    }
    let default_sentinel = default_sentinel_jwt(authority, now).await?;
    let jetstream = choice::current(&layout.data_dir)?.is_jetstream();
    let mut creds = Vec::new();
    for (account, user, path) in [
        (AUTH_ACCOUNT, SENTINEL_USER, &outputs.sentinel_creds),
        (ADMIN_ACCOUNT, ADMIN_USER, &outputs.admin_creds),
    ] {
        let account = AccountName::new(account).expect("valid");
        let user = UserName::new(user).expect("valid");
        // The local seed a JetStream deployment signs from never sees changes made through
        // the service (a deactivation, a new key): creds signed from it may be for a revoked
        // key, so a file already there is kept rather than replaced.
        if jetstream
            && user.as_str() == ADMIN_USER
            && tokio::fs::try_exists(path).await.unwrap_or(false)
        {
            tracing::info!(path = %path.display(), "JetStream store: keeping the existing admin creds");
            continue;
        }
        match authority.user_creds(&account, &user, now).await {
            Ok(text) => creds.push((path.clone(), Zeroizing::new(text))),
            // The first admin may be gone once another admin exists (the last one cannot
            // go): then there is no admin.creds to refresh, and init must not need one.
            Err(AuthorityError::NoSuchUser(_)) if user.as_str() == ADMIN_USER => {
                tracing::warn!(path = %path.display(), "the first admin was deleted; not writing its creds");
            }
            // Deactivated since (another admin is active): its key is revoked, and no creds
            // are signed for an inactive user.
            Err(AuthorityError::Inactive(_)) if user.as_str() == ADMIN_USER => {
                tracing::warn!(path = %path.display(), "the first admin is deactivated; not writing its creds");
            }
            Err(e) => return Err(e.into()),
        }
    }

    // File-system work off the async runtime.
    let (out_dir, settings, written) = (layout.out_dir.clone(), settings.clone(), outputs.clone());
    tokio::task::spawn_blocking(move || {
        let outputs = written;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BootstrapError::Write { path, source }
        };
        if tls.is_some() {
            check_local_tls(&out_dir.join(LOCAL_CONFIG))?;
        }
        std::fs::create_dir_all(&outputs.resolver_dir).map_err(io(&outputs.resolver_dir))?;
        // Absolute paths, so nats-server can be started from any directory.
        let out_dir = std::fs::canonicalize(&out_dir).map_err(io(&out_dir))?;
        write_file(&outputs.operator_jwt, operator_jwt.as_bytes(), false)?;
        let config = server_config::render(&ConfigInputs {
            settings: &settings,
            operator_jwt_file: &out_dir.join("operator.jwt"),
            system_account: &system_account,
            resolver_dir: &out_dir.join("jwt"),
            preload: &preload,
            default_sentinel: &default_sentinel,
            tls: tls.as_ref(),
        });
        write_file(&outputs.config, config.as_bytes(), false)?;
        let local = out_dir.join(LOCAL_CONFIG);
        let mut start = LOCAL_CONFIG_START.to_string();
        if jetstream {
            start.push_str(&server_config::jetstream_block(&out_dir.join(JETSTREAM_DIR)));
        }
        // Created once; from then on it is the operator's.
        match vault::write_file(&local, start.as_bytes(), Access::Public, Existing::Refuse) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if jetstream && !server_config::has_jetstream_block(&read_text(&local)?) {
                    tracing::warn!(
                        path = %local.display(),
                        "this deployment stores its records in JetStream, but {} has no \
                         `jetstream {{ store_dir: ... }}` block: add one (see \
                         nats-config/local/jetstream.conf), or the server cannot hold them",
                        local.display()
                    );
                }
            }
            Err(source) => return Err(BootstrapError::Write { path: local, source }),
        }
        for (path, text) in &creds {
            write_file(path, text.as_bytes(), true)?;
        }
        Ok::<_, BootstrapError>(())
    })
    .await
    .map_err(|e| BootstrapError::Write {
        path: layout.out_dir.clone(),
        source: std::io::Error::other(e),
    })??;
    Ok(outputs)
}

/// `tls` with absolute paths (nats-server resolves relative ones from wherever it is started),
/// each file checked to be there.
async fn absolute_tls(tls: Option<&ServerTls>) -> Result<Option<ServerTls>, BootstrapError> {
    let Some(tls) = tls.cloned() else { return Ok(None) };
    let absolute = |path: &PathBuf| {
        std::fs::canonicalize(path)
            .map_err(|source| BootstrapError::TlsFile { path: path.clone(), source })
    };
    let work = move || {
        Ok(ServerTls {
            cert_file: absolute(&tls.cert_file)?,
            key_file: absolute(&tls.key_file)?,
            ca_file: tls.ca_file.as_ref().map(absolute).transpose()?,
            verify: tls.verify,
        })
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BootstrapError::TlsFile {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
        .map(Some)
}

/// Refuses a `local.conf` with its own top-level `tls` block (see
/// [`server_config::has_top_level_tls`]); none yet is fine.
fn check_local_tls(local: &Path) -> Result<(), BootstrapError> {
    match std::fs::read_to_string(local) {
        Ok(text) if server_config::has_top_level_tls(&text) => {
            Err(BootstrapError::TlsConflict { local: local.to_path_buf() })
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BootstrapError::Write { path: local.to_path_buf(), source }),
    }
}

/// The sentinel's JWT as `default_sentinel`: a bearer token (nats-server checks no nonce
/// signature, so a client needs no key) that denies every publish and subscribe, signed now
/// without expiry, for the sentinel's own key (the one `sentinel.creds` holds).
async fn default_sentinel_jwt(
    authority: &Authority,
    now: UnixTime,
) -> Result<String, BootstrapError> {
    let auth = authority.account(&AccountName::new(AUTH_ACCOUNT).expect("valid")).await?;
    let sentinel =
        authority.user(&auth.name, &UserName::new(SENTINEL_USER).expect("valid")).await?;
    let mut permissions = crate::policy::deny_all();
    permissions.bearer_token = true;
    let jwt = crate::trust::user_jwt(
        &auth,
        &sentinel.identity.public,
        SENTINEL_USER,
        permissions,
        None,
        authority.master(),
        now,
    )
    .map_err(|e| BootstrapError::from(crate::authority::AuthorityError::from(e)))?;
    Ok(jwt)
}

/// Opens the store on the blocking pool: opening replays sled's log and fsyncs.
async fn open_store(dir: PathBuf, mode: OpenMode) -> Result<SledStore, StoreError> {
    tokio::task::spawn_blocking(move || SledStore::open(&dir, mode))
        .await
        .map_err(StoreError::backend)?
}

/// Creates `dir` readable by its owner only; an existing dir keeps the mode it has.
fn create_private_dir(dir: &Path) -> Result<(), BootstrapError> {
    if dir.exists() {
        return Ok(());
    }
    private_dir(dir).map_err(|source| BootstrapError::Write { path: dir.to_path_buf(), source })
}

/// Creates `dir` (and its parents) with mode 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes an output file through [`vault::write_file`]; `private` files (creds) are 0600.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), BootstrapError> {
    let access = if private { Access::Private } else { Access::Public };
    vault::write_file(path, contents, access, Existing::Replace)
        .map_err(|source| BootstrapError::Write { path: path.to_path_buf(), source })
}
