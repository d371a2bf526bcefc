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
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// NATS server URL.
    #[arg(
        long = "nats-url",
        env = "NATS_AUTHD_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,
    /// Admin creds file.
    #[arg(long, env = "NATS_AUTHD_CREDS", default_value = "authd/admin.creds", global = true)]
    pub creds: PathBuf,
    /// Print the raw JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10.0, global = true)]
    pub timeout: f64,
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

/// Parses `key=value`.
pub(crate) fn tag(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}
