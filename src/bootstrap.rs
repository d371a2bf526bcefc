//! `init`: creates the trust chain and topology once, and writes what the server and the
//! operators need (server config, operator JWT, admin and sentinel creds).
//!
//! Two directories with different secrecy: the data dir holds the store (every seed sealed)
//! and, by default, the master key; the out dir holds files meant to be handed out, creds
//! included. Keeping creds out of the data dir means a backup of the data dir holds no
//! usable secret without the master key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::authority::{self, Authority, AuthorityError, ADMIN_ACCOUNT, AUTH_ACCOUNT, SYS_ACCOUNT};
use crate::claims::{Export, ExportType, Import, ResponseType};
use crate::keys::{KeyRole, SealedKey};
use crate::model::{
    AccountKind, AccountName, AccountRecord, OperatorRecord, UnixTime, UserKind, UserName,
    UserRecord,
};
use crate::server_config::{self, ConfigInputs, ServerSettings};
use crate::store::sled::{OpenMode, SledStore};
use crate::store::{Batch, Db, Expect, Op, StoreError, Tree};
use crate::vault::{MasterKey, MasterKeySource, VaultError};

/// Subject prefix of the management API.
pub const API_PREFIX: &str = "authd";
/// Name of the service user in AUTH.
pub const SERVICE_USER: &str = "service";
/// Name of the sentinel user in AUTH.
pub const SENTINEL_USER: &str = "sentinel";
/// Name of the first admin user in ADMIN.
pub const ADMIN_USER: &str = "admin";

/// The server requests the service makes through SYS exports (DESIGN.md: checked to work).
pub const SYS_SERVICES: [&str; 5] = [
    "$SYS.REQ.CLAIMS.UPDATE",
    "$SYS.REQ.CLAIMS.DELETE",
    "$SYS.REQ.CLAIMS.LIST",
    "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
    "$SYS.REQ.SERVER.*.KICK",
];

/// Why `init` or opening the data dir failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
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

fn store_exists(data_dir: &Path) -> bool {
    store_dir(data_dir).join("db").exists()
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
/// output files are written again (fresh JWTs, same keys).
///
/// # Errors
/// [`VaultError::MissingMasterKey`] / [`VaultError::WrongMasterKey`] for an existing store
/// without its key (nothing is changed), [`StoreError::Locked`] if the service is running on
/// it, I/O errors writing outputs.
pub async fn init(opts: &InitOptions, now: UnixTime) -> Result<InitOutcome, BootstrapError> {
    let layout = &opts.layout;
    let source = opts.master_key.source(&layout.data_dir);
    let mut created_master_key = None;
    let master = match &source {
        // Only a brand-new data dir may get a brand-new key: creating one for an existing
        // store would lock its seeds away for good.
        MasterKeySource::File(path) if !store_exists(&layout.data_dir) && !path.exists() => {
            create_private_dir(&layout.data_dir)?;
            let key = MasterKey::create_file(path)?;
            // Said now, not only in the summary: if a later step fails, the key still exists.
            tracing::warn!(path = %path.display(), "created the master key; back it up apart from the data dir");
            created_master_key = Some(path.clone());
            key
        }
        other => other.load()?,
    };
    create_private_dir(&layout.data_dir)?;
    let db = Db::new(Arc::new(open_store(layout.store_dir(), OpenMode::CreateIfMissing).await?));
    let created = db.meta(authority::KEY_CHECK).await?.is_none();
    if created {
        db.commit(topology(&master, &opts.operator_name, opts.xkey, now)).await?;
    }
    let authority = Authority::open(db, master).await?;
    let outputs = write_outputs(&authority, layout, &opts.server, now).await?;
    let operator_public_key = authority.operator().await?.identity.public;
    Ok(InitOutcome { created, created_master_key, operator_public_key, outputs, authority })
}

/// Opens an initialized data dir for `serve`.
///
/// # Errors
/// [`StoreError::NotInitialized`], [`StoreError::Locked`], master-key errors.
pub async fn open(
    data_dir: &Path,
    master_key: &MasterKeyOptions,
) -> Result<Authority, BootstrapError> {
    // Checked before the key is read, so a mistyped path says "run init", not "no key".
    if !store_exists(data_dir) {
        let path = data_dir.display().to_string();
        return Err(StoreError::NotInitialized { path }.into());
    }
    let master = master_key.source(data_dir).load()?;
    let store = open_store(store_dir(data_dir), OpenMode::MustExist).await?;
    Ok(Authority::open(Db::new(Arc::new(store)), master).await?)
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

/// Every record of a fresh trust chain, as one batch: operator, SYS/AUTH/ADMIN, the service,
/// sentinel and admin users, and the master-key check. One batch, so a crash mid-init leaves
/// nothing half-made.
fn topology(master: &MasterKey, operator_name: &str, xkey: bool, now: UnixTime) -> Batch {
    let mut sys = account(SYS_ACCOUNT, AccountKind::System, master, now);
    sys.exports = SYS_SERVICES.iter().map(|s| Export::service(s, s)).collect();

    let mut auth = account(AUTH_ACCOUNT, AccountKind::Auth, master, now);
    auth.description = "nats-authd callout and management service".into();
    auth.imports = SYS_SERVICES.iter().map(|s| Import::service(s, s, sys.public_key())).collect();
    let api = format!("{API_PREFIX}.>");
    auth.exports = vec![Export::service("nats-authd API", &api), {
        // Stream, or service discovery from ADMIN sees only the first responder (DESIGN.md).
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
    let mut creds = Vec::new();
    for (account, user, path) in [
        (AUTH_ACCOUNT, SENTINEL_USER, &outputs.sentinel_creds),
        (ADMIN_ACCOUNT, ADMIN_USER, &outputs.admin_creds),
    ] {
        let account = AccountName::new(account).expect("valid");
        let user = UserName::new(user).expect("valid");
        let text = Zeroizing::new(authority.user_creds(&account, &user, now).await?);
        creds.push((path.clone(), text));
    }

    // File-system work off the async runtime.
    let (out_dir, settings, written) = (layout.out_dir.clone(), settings.clone(), outputs.clone());
    tokio::task::spawn_blocking(move || {
        let outputs = written;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BootstrapError::Write { path, source }
        };
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
        });
        write_file(&outputs.config, config.as_bytes(), false)?;
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
    let err = |source| BootstrapError::Write { path: dir.to_path_buf(), source };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(err)
}

/// Writes through a temp file and a rename, so a reader never sees half a file; `private`
/// files get mode 0600 from the start.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::Write { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let mut file = options.open(&tmp).map_err(err)?;
    #[cfg(unix)]
    if private {
        // The mode above applies only to new files; a stale temp file keeps its old mode.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    crate::vault::sync_parent(path).map_err(err)
}
