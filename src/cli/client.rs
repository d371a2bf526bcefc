//! What every client command shares: connection flags, the hand-over of a typed request to
//! whatever sends it, and the parsers of flag values.
//!
//! The commands here only build `api` request values; sending them (over NATS, as an admin)
//! is `main`'s job, through [`Sender`]. So a command is tested by looking at the value it
//! builds, and a bad argument is refused while the command line is parsed, before any
//! connection is made.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::user::Password;
use crate::api::ApiRequest;

/// Where the API is and who asks.
///
/// Each setting is taken from the first of: its flag, the project's variable
/// (`NATS_AUTHD_URL`, `NATS_AUTHD_CREDS`), the NATS CLI's variable (`NATS_URL`, `NATS_CREDS`,
/// `NATS_CA`, `NATS_CERT`, `NATS_KEY`), the selected NATS CLI context, the default.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// NATS server URL(s), comma-separated or repeated, tried in order [env: NATS_AUTHD_URL,
    /// NATS_URL; then the context's url; default: nats://127.0.0.1:4222].
    #[arg(
        short = 's',
        long = "server",
        visible_alias = "nats-url",
        value_delimiter = ',',
        value_name = "URL",
        global = true
    )]
    pub servers: Vec<String>,
    /// Admin creds file [env: NATS_AUTHD_CREDS, NATS_CREDS; then the context's creds; default:
    /// admin.creds in NATS_AUTHD_OUT_DIR, or authd/admin.creds as `init` writes it].
    #[arg(long, value_name = "FILE", global = true)]
    pub creds: Option<PathBuf>,
    /// NATS CLI context to take url, creds and TLS files from [env: NATS_CONTEXT; default: the
    /// one selected in ~/.config/nats/context.txt, if any].
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// TLS files (the context's `ca`, `cert`, `key` come after the flags and variables).
    #[command(flatten)]
    pub tls: super::TlsArgs,
    /// Print the raw JSON answer instead of a table; errors too, as
    /// {"error":{"code","kind","message"}} on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10.0, global = true)]
    pub timeout: f64,
}

/// The default server URL of client commands.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// The parts of a NATS CLI context file this CLI uses; other fields are ignored, and empty
/// strings (the NATS CLI writes every field) count as unset.
#[derive(Debug, Default, serde::Deserialize)]
struct NatsContext {
    #[serde(default)]
    url: String,
    #[serde(default)]
    creds: String,
    #[serde(default)]
    ca: String,
    #[serde(default)]
    cert: String,
    #[serde(default)]
    key: String,
}

impl ClientArgs {
    /// Where to connect and as whom, from the flags, the environment (`env`, so tests can
    /// give their own) and the NATS CLI context.
    ///
    /// # Errors
    /// [`CliError::Context`] if a named or selected context cannot be read.
    pub fn connect_spec(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<crate::client::ConnectSpec, CliError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let context = self.nats_context(&env)?;
        let from_context = |v: &str| (!v.is_empty()).then(|| expand_home(v, &env));
        let path = |flag: &Option<PathBuf>, vars: &[&str], ctx: &str| {
            flag.clone()
                .or_else(|| vars.iter().find_map(|v| env(v)).map(PathBuf::from))
                .or_else(|| from_context(ctx))
        };
        let urls = if !self.servers.is_empty() {
            self.servers.clone()
        } else {
            let url = env("NATS_AUTHD_URL")
                .or_else(|| env("NATS_URL"))
                .or_else(|| (!context.url.is_empty()).then(|| context.url.clone()))
                .unwrap_or_else(|| DEFAULT_URL.to_string());
            url.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
        };
        let creds = path(&self.creds, &["NATS_AUTHD_CREDS", "NATS_CREDS"], &context.creds)
            .unwrap_or_else(|| {
                // Where `init` writes it: in its out dir, whose default is ./authd.
                PathBuf::from(env("NATS_AUTHD_OUT_DIR").unwrap_or_else(|| "authd".into()))
                    .join("admin.creds")
            });
        let tls = self
            .tls
            .files(&env, [&context.ca, &context.cert, &context.key].map(|v| from_context(v)))?;
        Ok(crate::client::ConnectSpec {
            urls,
            creds,
            tls_ca: tls.ca,
            tls_cert: tls.client,
            connect_timeout: std::time::Duration::try_from_secs_f64(self.timeout).ok(),
        })
    }

    /// The NATS CLI context named by `--context` or `NATS_CONTEXT`, or selected in
    /// `context.txt`; an empty one if none is.
    fn nats_context(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<NatsContext, CliError> {
        let config = env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))
            .map(|dir| dir.join("nats"));
        let named = self.context.clone().or_else(|| env("NATS_CONTEXT"));
        let name = match (named, &config) {
            (Some(name), _) => name,
            (None, Some(config)) => match std::fs::read_to_string(config.join("context.txt")) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
                // No selected context is the usual case, not an error.
                _ => return Ok(NatsContext::default()),
            },
            (None, None) => return Ok(NatsContext::default()),
        };
        let Some(config) = config else {
            return Err(CliError::Context {
                name,
                cause: "neither HOME nor XDG_CONFIG_HOME is set".into(),
            });
        };
        let path = config.join("context").join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| CliError::Context {
            name: name.clone(),
            cause: format!("{}: {e}", path.display()),
        })?;
        serde_json::from_str(&text)
            .map_err(|e| CliError::Context { name, cause: format!("{}: {e}", path.display()) })
    }
}

/// `~/x` as the NATS CLI writes paths in contexts.
fn expand_home(path: &str, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (path.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Sends typed requests and shows their answers. `main` implements it over NATS; a test can
/// implement it to see what a command would send.
pub trait Sender {
    /// Why a request failed.
    type Error;

    /// Sends `request` to its endpoint and shows the answer.
    fn send<R>(&mut self, request: R) -> impl Future<Output = Result<(), Self::Error>>
    where
        R: ApiRequest,
        R::Reply: Serialize;
}

/// A command's request, whichever endpoint it is for: each noun's request enum, and the
/// single requests of `operator` and `status`.
pub trait Dispatch {
    /// Hands the request, as its own type, to `sender`.
    fn dispatch<S: Sender>(self, sender: &mut S) -> impl Future<Output = Result<(), S::Error>>;
}

impl Dispatch for crate::api::ops::GetOperator {
    fn dispatch<S: Sender>(self, sender: &mut S) -> impl Future<Output = Result<(), S::Error>> {
        sender.send(self)
    }
}

impl Dispatch for crate::api::ops::SysCreds {
    fn dispatch<S: Sender>(self, sender: &mut S) -> impl Future<Output = Result<(), S::Error>> {
        sender.send(self)
    }
}

impl Dispatch for crate::api::ops::GetStatus {
    fn dispatch<S: Sender>(self, sender: &mut S) -> impl Future<Output = Result<(), S::Error>> {
        sender.send(self)
    }
}

/// A file to write a creds answer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    pub path: PathBuf,
    /// Replace the file if it exists (`--force`); otherwise an existing file is refused.
    pub replace: bool,
}

impl OutFile {
    /// `--out` and `--force` of a command, if `--out` was given.
    pub fn of(path: &Option<PathBuf>, force: bool) -> Option<OutFile> {
        path.clone().map(|path| OutFile { path, replace: force })
    }
}

/// A flag value given as JSON, decoded into `T` while the command line is parsed: a value
/// that is not JSON, or not a `T` (an unknown field, a wrong type), is refused with serde's
/// reason before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromStr for Json<T> {
    type Err = serde_json::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(text).map(Json)
    }
}

/// Takes the decoded value out of an optional JSON flag.
pub(crate) fn json_value<T: Clone>(flag: &Option<Json<T>>) -> Option<T> {
    flag.as_ref().map(|Json(value)| value.clone())
}

/// Why a command could not be turned into a request.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// stdin could not be read.
    #[error("reading the password from stdin")]
    ReadPassword(#[source] std::io::Error),
    /// `--password-stdin` and an empty first line.
    #[error("no password on stdin")]
    NoPassword,
    /// A NATS CLI context that was asked for cannot be used.
    #[error("NATS context {name:?}: {cause}")]
    Context { name: String, cause: String },
    /// A client certificate without its key or the other way round (from the environment or
    /// a context; the flags require each other).
    #[error("a TLS client certificate needs both a cert and a key file")]
    HalfTlsPair,
    /// `up --server-tls-verify` without a client certificate for the service itself.
    #[error(
        "--server-tls-verify makes nats-server require a client certificate from every client, \
         nats-authd's own connection included: give --tlscert and --tlskey (a client \
         certificate signed by --server-tls-ca)"
    )]
    ServiceNeedsClientCert,
}

/// Reads a password from the first line of `input`.
///
/// # Errors
/// [`CliError::ReadPassword`] if `input` fails, [`CliError::NoPassword`] on an empty line.
pub fn read_password(input: &mut dyn std::io::BufRead) -> Result<Password, CliError> {
    // Zeroizing from the first byte read: the line holds the password too.
    let mut line = zeroize::Zeroizing::new(String::new());
    input.read_line(&mut line).map_err(CliError::ReadPassword)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(CliError::NoPassword);
    }
    Ok(Password::new(password))
}

/// Reads a password for `--password-stdin`: from a terminal, after a prompt on stderr and
/// with echo off, so it is not shown; from a pipe or file, the first line as is.
///
/// # Errors
/// As [`read_password`]; a terminal whose echo cannot be switched off is
/// [`CliError::ReadPassword`].
pub fn read_password_stdin() -> Result<Password, CliError> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return read_password(&mut stdin.lock());
    }
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let io = |e: nix::Error| CliError::ReadPassword(std::io::Error::from(e));
    let saved = tcgetattr(&stdin).map_err(io)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("Password: ");
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).map_err(io)?;
    let read = read_password(&mut stdin.lock());
    // Echo comes back whatever the read did.
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved).map_err(io)?;
    read
}

/// Parses `key=value`.
pub(crate) fn tag(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}
