//! Command-line interface: clap definitions and their translation into library options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use crate::app;
use crate::bootstrap::{InitOptions, Layout, MasterKeyOptions};
use crate::callout::authorize::CalloutSettings;
use crate::callout::limiter::Limits;
use crate::connection::{ConnectionSettings, TlsFiles};
use crate::publisher::PublisherSettings;
use crate::server_config::{ServerSettings, ServerTls};
use crate::store::choice::{Backend, StoreChoice, StoreRequest};

/// A noun's request enum: one variant per subcommand, each holding that endpoint's typed
/// request, and its [`Dispatch`] handing the variant's request, as its own type, to a sender.
macro_rules! requests {
    ($(#[$doc:meta])* $name:ident { $($variant:ident($request:ty)),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $(
                #[doc = concat!("`", stringify!($request), "`.")]
                $variant($request),
            )*
        }

        impl $crate::cli::client::Dispatch for $name {
            async fn dispatch<S: $crate::cli::client::Sender>(
                self,
                sender: &mut S,
            ) -> Result<(), S::Error> {
                match self {
                    $($name::$variant(request) => sender.send(request).await,)*
                }
            }
        }
    };
}
use requests;

pub mod account;
pub mod client;
pub mod output;
pub mod pending;
pub mod role;
pub mod token;
pub mod user;

pub use account::{AccountCmd, AccountRequest};
pub use client::{
    read_password, read_password_stdin, CliError, ClientArgs, Dispatch, Json, OutFile, Sender,
};
pub use pending::{PendingCmd, PendingRequest};
pub use role::{RoleCmd, RoleFields, RoleRequest};
pub use token::{TokenCmd, TokenRequest};
pub use user::{UserCmd, UserRequest};

/// Environment variable holding the master key itself (base64). Not a flag: flags show in `ps`.
pub const MASTER_KEY_ENV: &str = "NATS_AUTHD_MASTER_KEY";

/// Log filter when none is given. async-nats logs every connection event at info; ours say the
/// same once, in our words.
pub const DEFAULT_LOG: &str = "info,async_nats=warn";

/// Log filter of client commands when none is given: their failure is the error they print,
/// and async-nats's own log line about it would say it a second time.
pub const CLIENT_LOG: &str = "warn,async_nats=off";

/// Log targets of async-nats that print message bodies or whole protocol lines, and the most
/// they may log, whatever the filter says. Message bodies carry passwords (`user.create`),
/// creds with seeds (`user.creds`) and tokens.
/// - `async_nats::connection` at trace logs every protocol operation it reads, payload
///   included (`read operation completed`, `read operation: unknown`), and headers written.
/// - `async_nats::jetstream` at debug logs JetStream request bodies and whole messages.
///
/// The rest of async-nats logs subjects, ids and connection events, never a body.
pub const SECRET_SAFE_CAPS: [(&str, tracing::Level); 2] = [
    ("async_nats::connection", tracing::Level::DEBUG),
    ("async_nats::jetstream", tracing::Level::INFO),
];

/// A filter to apply on top of the user's: it lets through everything except what
/// [`SECRET_SAFE_CAPS`] forbids. Being a second filter, not more directives in the first, no
/// directive of the user's (however specific) can lift it.
pub fn secret_safe_filter() -> tracing_subscriber::filter::Targets {
    SECRET_SAFE_CAPS.iter().fold(
        tracing_subscriber::filter::Targets::new()
            .with_default(tracing_subscriber::filter::LevelFilter::TRACE),
        |targets, (target, level)| targets.with_target(*target, *level),
    )
}

/// Exit codes, as `--help` shows them.
pub const EXIT_CODES: &str = "Exit codes:
  0  success
  1  any other error (an internal error of the service included)
  2  usage or bad input (a bad flag, the service's 400, an unreadable creds file)
  3  not found (the service's 404)
  4  conflict (the service's 409: exists, in use, changed, inactive, refused)
  5  no answer: no server reachable, no service running, time-out, the store unavailable (503)
  6  not allowed: creds refused, a publish denied, the service's 403";

/// nats-authd: accounts, users, roles and auth callout for NATS, managed over NATS.
#[derive(Debug, Parser)]
#[command(name = "nats-authd", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Log filter (tracing syntax), e.g. `info` or `nats_authd=debug`. No level prints a
    /// secret: whatever the filter says, async-nats's protocol trace (`async_nats::connection`)
    /// is capped at debug and `async_nats::jetstream` at info, as they print message bodies
    /// (passwords, creds). Default: `info,async_nats=warn` for init/up/serve; `warn,async_nats=off`
    /// for client commands, whose errors are printed once, in their own words.
    #[arg(long, env = "RUST_LOG", global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the trust chain (operator, SYS, AUTH, ADMIN, service/sentinel/admin users) and
    /// write the nats-server config and creds. Safe to re-run: keys are kept, files rewritten.
    Init(InitArgs),
    /// Bring up a local stack: init (new trust chain if needed, files refreshed), start
    /// nats-server, run the service. Ctrl-C stops both.
    Up(UpArgs),
    /// Run the service against an existing nats-server.
    Serve(ServeArgs),
    /// Manage accounts (as an admin, over NATS).
    Account(AccountArgs),
    /// Manage users (as an admin, over NATS).
    User(UserArgs),
    /// Manage roles (as an admin, over NATS).
    Role(RoleArgs),
    /// Manage API tokens for callout logins (as an admin, over NATS).
    Token(TokenArgs),
    /// Inspect or retry queued account pushes.
    Pending(PendingArgs),
    /// Show the operator JWT and keys (to configure more servers).
    Operator(ClientArgs),
    /// Creds of a system-account user, for nats-server's own requests (`nats server list`,
    /// `report`, `ping`). Made the first time, the same user after. Keep it with the admins:
    /// it sees every server and connection.
    SysCreds(SysCredsArgs),
    /// Ask a running service for its status.
    Status(ClientArgs),
}

impl Command {
    /// The connection flags of a client command; `None` for init, up and serve.
    pub fn client(&self) -> Option<&ClientArgs> {
        match self {
            Command::Init(_) | Command::Up(_) | Command::Serve(_) => None,
            Command::Account(a) => Some(&a.client),
            Command::User(a) => Some(&a.client),
            Command::Role(a) => Some(&a.client),
            Command::Token(a) => Some(&a.client),
            Command::Pending(a) => Some(&a.client),
            Command::Operator(c) | Command::Status(c) => Some(c),
            Command::SysCreds(a) => Some(&a.client),
        }
    }
}

macro_rules! client_command {
    ($(#[$doc:meta])* $name:ident, $cmd:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Args)]
        pub struct $name {
            #[command(flatten)]
            pub client: ClientArgs,
            #[command(subcommand)]
            pub cmd: $cmd,
        }
    };
}

client_command!(
    /// `account` and its connection flags.
    AccountArgs,
    AccountCmd
);
client_command!(
    /// `user` and its connection flags.
    UserArgs,
    UserCmd
);
client_command!(
    /// `role` and its connection flags.
    RoleArgs,
    RoleCmd
);
client_command!(
    /// `token` and its connection flags.
    TokenArgs,
    TokenCmd
);
client_command!(
    /// `pending` and its connection flags.
    PendingArgs,
    PendingCmd
);

/// `sys-creds` and its connection flags.
#[derive(Debug, Clone, Args)]
pub struct SysCredsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Name of the user in the system account.
    #[arg(long, value_parser = crate::model::UserName::new, default_value = crate::names::SYS_OPERATOR_USER)]
    pub name: crate::model::UserName,
    /// Write the creds to this file (mode 0600) instead of stdout; an existing file is
    /// refused unless --force is given.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Replace an existing --out file (the new file is mode 0600 whatever the old one was).
    #[arg(long, requires = "out")]
    pub force: bool,
}

/// The TLS files of a NATS connection, shared by the client commands, `serve` and `up`.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// CA file (PEM) to verify the server's TLS certificate with; given, TLS is required
    /// [env: NATS_CA].
    #[arg(long, value_name = "FILE", global = true)]
    pub tlsca: Option<PathBuf>,
    /// Client TLS certificate (PEM), for servers that verify clients (mTLS) [env: NATS_CERT].
    #[arg(long, value_name = "FILE", global = true, requires = "tlskey")]
    pub tlscert: Option<PathBuf>,
    /// Key of the client TLS certificate [env: NATS_KEY].
    #[arg(long, value_name = "FILE", global = true, requires = "tlscert")]
    pub tlskey: Option<PathBuf>,
}

impl TlsArgs {
    /// Each file from its flag, else `NATS_CA`, `NATS_CERT`, `NATS_KEY` (from `env`, empty
    /// counting as unset), else `fallback` (a NATS CLI context's `ca`, `cert`, `key`).
    ///
    /// # Errors
    /// [`CliError::HalfTlsPair`] for a certificate without its key or the other way round.
    pub fn files(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        fallback: [Option<PathBuf>; 3],
    ) -> Result<TlsFiles, CliError> {
        let [ca, cert, key] = fallback;
        let pick = |flag: &Option<PathBuf>, var: &str, fallback: Option<PathBuf>| {
            flag.clone()
                .or_else(|| env(var).filter(|v| !v.is_empty()).map(PathBuf::from))
                .or(fallback)
        };
        let client =
            match (pick(&self.tlscert, "NATS_CERT", cert), pick(&self.tlskey, "NATS_KEY", key)) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err(CliError::HalfTlsPair),
            };
        Ok(TlsFiles { ca: pick(&self.tlsca, "NATS_CA", ca), client })
    }
}

/// TLS for client connections in the generated server config.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerTlsArgs {
    /// Turn TLS on for client connections: the server's certificate (PEM), written into the
    /// generated nats-server.conf by every init (give the flags again each time).
    #[arg(long, value_name = "FILE", requires = "server_tls_key")]
    pub server_tls_cert: Option<PathBuf>,
    /// Private key of --server-tls-cert.
    #[arg(long, value_name = "FILE", requires = "server_tls_cert")]
    pub server_tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to; `up` also trusts it for the
    /// service's own connection unless --tlsca is given.
    #[arg(long, value_name = "FILE", requires = "server_tls_cert")]
    pub server_tls_ca: Option<PathBuf>,
    /// Require a client certificate signed by --server-tls-ca from every client (mTLS),
    /// nats-authd's own connection included (`up` then needs --tlscert/--tlskey).
    #[arg(long, requires = "server_tls_ca")]
    pub server_tls_verify: bool,
}

impl ServerTlsArgs {
    /// The TLS block to write, if TLS is on.
    pub fn settings(&self) -> Option<ServerTls> {
        let (cert, key) = (self.server_tls_cert.clone()?, self.server_tls_key.clone()?);
        Some(ServerTls {
            cert_file: cert,
            key_file: key,
            ca_file: self.server_tls_ca.clone(),
            verify: self.server_tls_verify,
        })
    }
}

/// Where the store and the master key are.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Data directory: the store (seeds sealed) and, by default, the master key.
    #[arg(long, env = "NATS_AUTHD_DATA_DIR", default_value = "authd/data")]
    pub data_dir: PathBuf,
    /// Master key file [default: DATA_DIR/master.key]. NATS_AUTHD_MASTER_KEY (the key itself,
    /// base64) takes precedence.
    #[arg(long, env = "NATS_AUTHD_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}

/// The generated nats-server config.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Output directory: nats-server.conf, operator.jwt, the resolver dir, admin and sentinel creds.
    #[arg(long, env = "NATS_AUTHD_OUT_DIR", default_value = "authd")]
    pub out_dir: PathBuf,
    /// Interface nats-server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// nats-server client port.
    #[arg(long, default_value_t = 4222)]
    pub port: u16,
    /// nats-server HTTP monitoring port.
    #[arg(long, default_value_t = 8222)]
    pub http_port: u16,
    /// nats-server `server_name`.
    #[arg(long, default_value = "authd-local")]
    pub server_name: String,
}

/// `init` arguments.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Name of the operator (new trust chains only).
    #[arg(long, default_value = "nats-authd")]
    pub operator_name: String,
    /// Do not seal callout requests with an xkey (new trust chains only).
    #[arg(long)]
    pub no_xkey: bool,
    #[command(flatten)]
    pub server_tls: ServerTlsArgs,
    /// Where the records live: `sled` (this data dir, one instance) or `jetstream` (a stream
    /// in the AUTH account, shared by several instances) [default: sled]. Chosen by the first
    /// init and kept in DATA_DIR/store.json; a later init may only repeat it.
    #[arg(long = "store", value_enum)]
    pub backend: Option<Backend>,
    /// Copies of the JetStream stream in a cluster (1-5; `--store jetstream` only) [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: Option<u8>,
}

/// `up` arguments.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub init: InitArgs,
    /// nats-server binary [default: search PATH].
    #[arg(long, env = "NATS_SERVER_BIN")]
    pub nats_server: Option<PathBuf>,
    /// TLS files of the service's own connection (--tlsca defaults to --server-tls-ca).
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub publisher: PublisherArgs,
    #[command(flatten)]
    pub callout: CalloutArgs,
    /// Start N nats-servers on this host as one cluster with JetStream (3 or more for
    /// failover), init with `--store jetstream --replicas min(N,3)`, and run several
    /// instances. Ports count up from --port, --http-port and --cluster-port (`--port 0`:
    /// free ports); each server gets OUT_DIR/authd-<i>.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=9))]
    pub cluster: Option<u8>,
    /// Instances of the service with --cluster, each a `serve` process on its own copy of
    /// the data dir (DATA_DIR-<i>) [default: 2].
    #[arg(long, value_name = "M", requires = "cluster", value_parser = clap::value_parser!(u8).range(1..=9))]
    pub instances: Option<u8>,
    /// Route port of the first server with --cluster (the others count up from it).
    #[arg(long, default_value_t = 6222, requires = "cluster")]
    pub cluster_port: u16,
}

/// Auth callout tuning.
#[derive(Debug, Clone, Args)]
pub struct CalloutArgs {
    /// Lifetime of user JWTs minted at login, in seconds (a user's own shorter lifetime wins).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub callout_jwt_ttl: u64,
    /// How long a verified password is remembered so reconnects skip argon2, in seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub callout_cache_ttl: u64,
    /// Failed logins per user name within the window before further attempts are refused (0: no limit).
    #[arg(long, default_value_t = 5)]
    pub login_failures_per_user: u32,
    /// Failed logins per client address within the window before further attempts are refused (0: no limit).
    #[arg(long, default_value_t = 50)]
    pub login_failures_per_host: u32,
    /// The brute-force window, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_failure_window: u64,
}

impl CalloutArgs {
    /// Callout settings.
    pub fn settings(&self) -> CalloutSettings {
        CalloutSettings {
            jwt_ttl: Duration::from_secs(self.callout_jwt_ttl),
            cache_ttl: Duration::from_secs(self.callout_cache_ttl),
            limits: Limits {
                per_login: self.login_failures_per_user,
                per_host: self.login_failures_per_host,
                window: Duration::from_secs(self.login_failure_window),
            },
        }
    }
}

/// Claims publisher tuning.
#[derive(Debug, Clone, Args)]
pub struct PublisherArgs {
    /// Attempts before an account push is marked failed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub push_max_attempts: u32,
    /// How long failed pushes are kept for inspection and retry, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 86_400)]
    pub push_retention: u64,
}

impl PublisherArgs {
    /// Publisher settings.
    pub fn settings(&self) -> PublisherSettings {
        PublisherSettings {
            max_attempts: self.push_max_attempts,
            retention: Duration::from_secs(self.push_retention),
            ..PublisherSettings::default()
        }
    }
}

/// Parses a backoff multiplier: at least 1.
fn multiplier(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v >= 1.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{text} must be a number >= 1")),
    }
}

/// Parses a positive number of seconds.
fn secs(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(value > 0.0 && value.is_finite()) {
        return Err(format!("{text} must be a positive number of seconds"));
    }
    Duration::try_from_secs_f64(value).map_err(|e| e.to_string())
}

/// `serve` arguments.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// NATS server URL; repeat (or comma-separate) for backups, primary first.
    #[arg(
        long = "nats-url",
        env = "NATS_AUTHD_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_urls: Vec<String>,
    /// Exit with an error if the first connect fails, instead of waiting for a server.
    #[arg(long)]
    pub require_nats: bool,
    /// Consecutive failed attempts on the primary before moving to a backup.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub primary_retries: u32,
    /// Delay before the second attempt on a server, in seconds (the first is immediate).
    #[arg(long, value_name = "SECS", default_value = "0.25", value_parser = secs)]
    pub initial_backoff: Duration,
    /// Longest delay between attempts, in seconds (with a single server: 0.05).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = secs)]
    pub max_backoff: Duration,
    /// Growth of the delay per failed attempt.
    #[arg(long, default_value_t = 2.0, value_parser = multiplier)]
    pub backoff_multiplier: f64,
    /// While on a backup, how often to check whether the primary is back, in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs)]
    pub failback_interval: Duration,
    /// Time-out of one connect attempt, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = secs)]
    pub connect_timeout: Duration,
    /// Time-out of requests the service makes to the servers, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = secs)]
    pub request_timeout: Duration,
    /// TLS files of the service's connection.
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub publisher: PublisherArgs,
    #[command(flatten)]
    pub callout: CalloutArgs,
}

impl StoreArgs {
    /// Master key options: the environment's key text wins over the file.
    pub fn master_key(&self, env_key: Option<String>) -> MasterKeyOptions {
        MasterKeyOptions { inline: env_key.map(Zeroizing::new), file: self.master_key_file.clone() }
    }
}

impl ServerArgs {
    /// The server settings.
    pub fn settings(&self) -> ServerSettings {
        ServerSettings {
            host: self.host.clone(),
            port: self.port,
            http_port: self.http_port,
            server_name: self.server_name.clone(),
        }
    }
}

impl InitArgs {
    /// The layout of data and out dirs.
    pub fn layout(&self) -> Layout {
        Layout { data_dir: self.store.data_dir.clone(), out_dir: self.server.out_dir.clone() }
    }

    /// The store asked for.
    pub fn store_request(&self) -> StoreRequest {
        StoreRequest { backend: self.backend, replicas: self.replicas.map(usize::from) }
    }

    /// Library options for `init`.
    pub fn options(&self, env_key: Option<String>) -> InitOptions {
        InitOptions {
            layout: self.layout(),
            master_key: self.store.master_key(env_key),
            server: self.server.settings(),
            operator_name: self.operator_name.clone(),
            xkey: !self.no_xkey,
        }
    }
}

impl ServeArgs {
    /// Service settings, TLS files taken from `env` where no flag gives them.
    ///
    /// # Errors
    /// [`CliError::HalfTlsPair`] for a client certificate without its key or the reverse.
    pub fn settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<app::Settings, CliError> {
        Ok(app::Settings {
            connection: ConnectionSettings {
                urls: self.nats_urls.clone(),
                primary_retries: self.primary_retries as usize,
                initial_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
                backoff_multiplier: self.backoff_multiplier,
                failback_interval: self.failback_interval,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                require_nats: self.require_nats,
                tls: self.tls.files(env, Default::default())?,
            },
            publisher: self.publisher.settings(),
            callout: self.callout.settings(),
            // The data dir's, read when it is opened.
            store: StoreChoice::default(),
            ..app::Settings::default()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The command line `nats-authd <args>`, parsed.
    pub(crate) fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("nats-authd").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_and_argument_has_help_text() {
        fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(sub_path.clone());
                }
                check(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "nats-authd", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    #[test]
    fn serve_splits_backup_urls_and_reads_flags() {
        let cli = Cli::try_parse_from([
            "nats-authd",
            "serve",
            "--nats-url",
            "nats://a:4222,nats://b:4222",
            "--require-nats",
            "--connect-timeout",
            "0.5",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        let conn = args.settings(&|_| None).unwrap().connection;
        assert_eq!(conn.urls, ["nats://a:4222", "nats://b:4222"]);
        assert!(conn.require_nats);
        assert_eq!(conn.connect_timeout, Duration::from_millis(500));
    }

    #[test]
    fn serve_takes_tls_files_from_flags_then_the_environment() {
        let Command::Serve(args) =
            parse(&["serve", "--tlscert", "c.pem", "--tlskey", "k.pem"]).unwrap()
        else {
            panic!("not serve")
        };
        let env = |name: &str| (name == "NATS_CA").then(|| "env-ca.pem".to_string());
        let tls = args.settings(&env).unwrap().connection.tls;
        assert_eq!(tls.ca, Some(PathBuf::from("env-ca.pem")));
        assert_eq!(tls.client, Some(("c.pem".into(), "k.pem".into())));
        assert_eq!(args.settings(&|_| None).unwrap().connection.tls.ca, None);
        let Command::Serve(args) = parse(&["serve"]).unwrap() else { panic!("not serve") };
        let half = |name: &str| (name == "NATS_CERT").then(|| "c.pem".to_string());
        assert!(matches!(args.settings(&half), Err(CliError::HalfTlsPair)));
        assert!(parse(&["serve", "--tlscert", "c.pem"]).is_err(), "a cert needs its key");
    }

    #[test]
    fn server_tls_flags_need_their_partners() {
        let Command::Init(args) = parse(&[
            "init",
            "--server-tls-cert",
            "s.pem",
            "--server-tls-key",
            "s-key.pem",
            "--server-tls-ca",
            "ca.pem",
            "--server-tls-verify",
        ])
        .unwrap() else {
            panic!("not init")
        };
        let tls = args.server_tls.settings().unwrap();
        assert_eq!((tls.ca_file, tls.verify), (Some(PathBuf::from("ca.pem")), true));
        let Command::Init(args) = parse(&["init"]).unwrap() else { panic!("not init") };
        assert_eq!(args.server_tls.settings(), None);
        for bad in [
            &["init", "--server-tls-cert", "s.pem"][..],
            &["init", "--server-tls-key", "k.pem"],
            &["init", "--server-tls-ca", "ca.pem"],
            &["up", "--server-tls-cert", "s.pem", "--server-tls-key", "k", "--server-tls-verify"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_log_filter_lets_async_nats_print_message_bodies() {
        use tracing::Level;
        let safe = secret_safe_filter();
        for target in ["async_nats::connection", "async_nats::jetstream::context"] {
            assert!(!safe.would_enable(target, &Level::TRACE), "{target} at trace");
        }
        assert!(!safe.would_enable("async_nats::jetstream::consumer::pull", &Level::DEBUG));
        assert!(safe.would_enable("async_nats::connection", &Level::DEBUG));
        assert!(safe.would_enable("async_nats", &Level::TRACE));
        assert!(safe.would_enable("nats_authd::service", &Level::TRACE));
    }

    #[test]
    fn init_defaults_keep_data_and_outputs_apart() {
        let cli = Cli::try_parse_from(["nats-authd", "init"]).unwrap();
        let Command::Init(args) = cli.command else { panic!("not init") };
        let opts = args.options(None);
        assert_eq!(opts.layout.data_dir, PathBuf::from("authd/data"));
        assert_eq!(opts.layout.out_dir, PathBuf::from("authd"));
        assert!(opts.xkey);
        assert_eq!(opts.server.port, 4222);
    }
}
