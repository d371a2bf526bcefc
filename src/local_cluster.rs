//! A cluster of nats-servers on one host, with routes and JetStream, for `up --cluster` and
//! the tests: the plan (names, ports, dirs), each server's `local.conf` and generated config,
//! starting the servers, waiting for JetStream's meta leader, and the per-instance copies of
//! the data dir.
//!
//! One implementation for both, so what a newcomer runs is what the tests check.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::authority::Authority;
use crate::bootstrap::{self, BootstrapError, Layout, Outputs, LOCAL_CONFIG};
use crate::nats_server::{self, NatsServer, NatsServerError, Supervised};
use crate::server_config::{self, ServerSettings};
use crate::store::sled::{StoreLock, LOCK_FILE};
use crate::store::StoreError;

/// The cluster's `name` in every server's `cluster` block.
pub const CLUSTER_NAME: &str = "authd-local";

/// The first line of a `local.conf` that this module wrote and may rewrite. A `local.conf`
/// without it is the operator's and is left alone.
pub const MANAGED_MARK: &str =
    "# Written by nats-authd for a local cluster (up --cluster): rewritten on every run.";

/// Why the local cluster could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// A file or dir could not be written, copied or removed.
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// No free port could be found.
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Server(#[from] NatsServerError),
    /// An instance still runs on the copy of the data dir that was to be refreshed.
    #[error("{path} is in use (is an instance of an earlier run still serving it?): {source}")]
    CopyInUse { path: PathBuf, source: StoreError },
    /// JetStream elected no meta leader in time.
    #[error("JetStream has no meta leader at {addr} after {secs}s (see the servers' logs)")]
    NoMetaLeader { addr: String, secs: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalClusterError {
    let path = path.to_path_buf();
    move |source| LocalClusterError::Io { path, source }
}

/// One server of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// Its name, client and monitoring ports.
    pub settings: ServerSettings,
    /// The port its route listener binds.
    pub route_port: u16,
    /// Its out dir: config, `local.conf`, resolver dir, JetStream store, log.
    pub out_dir: PathBuf,
}

impl NodePlan {
    /// Its client URL.
    pub fn url(&self) -> String {
        self.settings.client_url()
    }

    /// Where its monitoring endpoint listens (`host:port`).
    pub fn monitor_addr(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.http_port)
    }

    /// Its resolver dir (where the full resolver keeps account JWTs).
    pub fn resolver_dir(&self) -> PathBuf {
        self.out_dir.join("jwt")
    }

    /// Its JetStream store dir.
    pub fn jetstream_dir(&self) -> PathBuf {
        self.out_dir.join(bootstrap::JETSTREAM_DIR)
    }

    /// Its nats-server log.
    pub fn log_file(&self) -> PathBuf {
        self.out_dir.join("nats-server.log")
    }

    /// Its files, for a deployment whose data dir is `data_dir`.
    pub fn layout(&self, data_dir: &Path) -> Layout {
        Layout { data_dir: data_dir.to_path_buf(), out_dir: self.out_dir.clone() }
    }
}

/// The first ports of a plan; server `i` (from 0) gets each plus `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstPorts {
    /// Client port.
    pub client: u16,
    /// Monitoring (HTTP) port.
    pub http: u16,
    /// Route port.
    pub route: u16,
}

/// The servers of a local cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    /// The servers, `authd-1` first.
    pub nodes: Vec<NodePlan>,
}

impl ClusterPlan {
    /// `servers` servers named `authd-1..N` on `host`, each in `out_dir/authd-<i>`; ports
    /// count up from `first`, or are free ones when `first` is `None`.
    ///
    /// # Errors
    /// [`LocalClusterError::Io`] when `out_dir` cannot be made absolute,
    /// [`LocalClusterError::NoPort`] when no free port can be had, or `first` plus the
    /// number of servers passes 65535.
    pub fn new(
        out_dir: &Path,
        host: &str,
        servers: usize,
        first: Option<FirstPorts>,
    ) -> Result<Self, LocalClusterError> {
        // Absolute: nats-server resolves a relative store_dir from wherever it is started.
        let out_dir = std::path::absolute(out_dir).map_err(io(out_dir))?;
        let nodes = (0..servers)
            .map(|i| {
                let name = format!("authd-{}", i + 1);
                let (port, http_port, route_port) = match first {
                    Some(first) => {
                        (offset(first.client, i)?, offset(first.http, i)?, offset(first.route, i)?)
                    }
                    None => (free_port()?, free_port()?, free_port()?),
                };
                Ok(NodePlan {
                    settings: ServerSettings {
                        host: host.to_string(),
                        port,
                        http_port,
                        server_name: name.clone(),
                    },
                    route_port,
                    out_dir: out_dir.join(name),
                })
            })
            .collect::<Result<_, LocalClusterError>>()?;
        Ok(ClusterPlan { nodes })
    }

    /// Every server's client URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NodePlan::url).collect()
    }

    /// The client URLs with server `primary` first and the others after it, in order: what
    /// an instance whose primary is that server connects with.
    pub fn urls_from(&self, primary: usize) -> Vec<String> {
        let mut urls = self.urls();
        let by = primary % urls.len().max(1);
        urls.rotate_left(by);
        urls
    }

    /// Server `i`'s `local.conf`: JetStream with its own store dir, and a `cluster` block
    /// with routes to every other server.
    pub fn local_conf(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("    \"nats-route://{}:{}\"", n.settings.host, n.route_port))
            .collect();
        format!(
            "{MANAGED_MARK}\n# Remove that line to keep your own edits; then keep the ports in step \
             yourself.\n{}\ncluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"{}:{}\"\n  \
             routes: [\n{}\n  ]\n}}\n",
            server_config::jetstream_block(&node.jetstream_dir()),
            node.settings.host,
            node.route_port,
            routes.join("\n")
        )
    }
}

fn offset(first: u16, i: usize) -> Result<u16, LocalClusterError> {
    u16::try_from(usize::from(first) + i)
        .map_err(|_| LocalClusterError::NoPort(std::io::Error::other("port beyond 65535")))
}

/// A loopback port nobody listens on right now (it may be taken before it is used; the
/// server's start then reports the address in use).
///
/// # Errors
/// [`LocalClusterError::NoPort`].
pub fn free_port() -> Result<u16, LocalClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(LocalClusterError::NoPort)?;
    Ok(listener.local_addr().map_err(LocalClusterError::NoPort)?.port())
}

/// Writes every server's `local.conf` ([`ClusterPlan::local_conf`]), unless one is there
/// without [`MANAGED_MARK`]: then it is the operator's and is kept (with a warning). Before
/// `init`, which would otherwise create a `local.conf` with a JetStream block only.
///
/// # Errors
/// I/O errors.
pub async fn write_local_confs(plan: &ClusterPlan) -> Result<(), LocalClusterError> {
    for (i, node) in plan.nodes.iter().enumerate() {
        let local = node.out_dir.join(LOCAL_CONFIG);
        let text = plan.local_conf(i);
        let dir = node.out_dir.clone();
        let path = local.clone();
        let wrote = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            match std::fs::read_to_string(&path) {
                Ok(have) if !have.starts_with(MANAGED_MARK) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::fs::write(&path, text)?;
            Ok(true)
        })
        .await
        .map_err(|e| io(&local)(std::io::Error::other(e)))?
        .map_err(io(&local))?;
        if !wrote {
            tracing::warn!(
                path = %local.display(),
                "kept this local.conf (it is not the one `up --cluster` writes); its cluster and \
                 jetstream blocks must match this run's ports"
            );
        }
    }
    Ok(())
}

/// Writes every server's generated config (and the operator JWT, creds) from `authority`
/// after [`write_local_confs`], and checks each with `nats-server -t`.
///
/// # Errors
/// [`BootstrapError`] from writing the outputs, [`NatsServerError::BadConfig`].
pub async fn write_configs(
    authority: &Authority,
    data_dir: &Path,
    plan: &ClusterPlan,
    bin: &Path,
) -> Result<Vec<Outputs>, LocalClusterError> {
    let mut outputs = Vec::new();
    for node in &plan.nodes {
        let layout = node.layout(data_dir);
        outputs.push(
            bootstrap::write_outputs(authority, &layout, &node.settings, crate::model::now())
                .await?,
        );
        nats_server::check_config(bin, &layout.config_file()).await?;
    }
    Ok(outputs)
}

/// Starts every server of `plan` at once (each logging to [`NodePlan::log_file`]) and waits
/// until each accepts connections. On an error the ones already started are stopped.
///
/// # Errors
/// The first [`NatsServerError`].
pub async fn start_servers(
    bin: &Path,
    plan: &ClusterPlan,
    ready_within: Duration,
) -> Result<Vec<NatsServer>, LocalClusterError> {
    let started = futures::future::join_all(plan.nodes.iter().map(|node| {
        let config = node.layout(Path::new("")).config_file();
        let log = node.log_file();
        let addr = node.settings.listen_addr();
        async move { NatsServer::start(bin, &config, &log, &addr, &[], ready_within).await }
    }))
    .await;
    // Dropping a started server kills it: the error path leaves none behind.
    Ok(started.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// Polls every server's `/jsz` until each names a JetStream meta leader; returns the leader's
/// name as the first server reports it.
///
/// # Errors
/// [`LocalClusterError::NoMetaLeader`] after `within`.
pub async fn await_meta_leader(
    plan: &ClusterPlan,
    within: Duration,
) -> Result<String, LocalClusterError> {
    let deadline = Instant::now() + within;
    let mut first = None;
    for node in &plan.nodes {
        let addr = node.monitor_addr();
        loop {
            if let Some(leader) = meta_leader(&addr).await {
                first.get_or_insert(leader);
                break;
            }
            if Instant::now() >= deadline {
                return Err(LocalClusterError::NoMetaLeader { addr, secs: within.as_secs() });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(first.unwrap_or_default())
}

/// The meta leader `/jsz` at `addr` names, if it answers and names one.
pub async fn meta_leader(addr: &str) -> Option<String> {
    let body = http_get(addr, "/jsz").await?;
    let json = body.split_once("\r\n\r\n").map(|(_, b)| b)?;
    let jsz: serde_json::Value = serde_json::from_str(json).ok()?;
    let leader = jsz.get("meta_cluster")?.get("leader")?.as_str()?;
    (!leader.is_empty()).then(|| leader.to_string())
}

/// The response (status line, headers, body) to `GET path` on the monitoring port at `addr`,
/// if it answers within 2 s.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        Some(text)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok()?
}

/// Makes `to` a fresh copy of the data dir `from` (store, `store.json`, master key if it is
/// there; sled's lock file left behind), as an operator would copy it to another host.
///
/// An existing `to` is replaced only while nobody serves it (its store lock is taken first),
/// and the new copy is built beside it and renamed into place, so an interrupted refresh
/// leaves the old copy or the new one, never half of one. In JetStream mode the copy's store
/// is only the seed of the shared stream (never written after), so replacing it loses
/// nothing. `from` must not be open meanwhile.
///
/// # Errors
/// [`LocalClusterError::CopyInUse`] if a process holds `to`; I/O errors.
pub async fn refresh_copy(from: &Path, to: &Path) -> Result<(), LocalClusterError> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || refresh_copy_blocking(&from, &to))
        .await
        .map_err(|e| io(Path::new(""))(std::io::Error::other(e)))?
}

/// [`refresh_copy`] on the calling thread, for callers outside an async runtime.
///
/// # Errors
/// As [`refresh_copy`].
pub fn refresh_copy_blocking(from: &Path, to: &Path) -> Result<(), LocalClusterError> {
    let staging = staging_of(to);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    copy_dir(from, &staging).map_err(io(&staging))?;
    if to.exists() {
        let store = bootstrap::store_dir(to);
        // Held while the old copy is removed: no instance can start on it meanwhile.
        let _lock = if store.exists() {
            Some(StoreLock::take(&store).map_err(|source| LocalClusterError::CopyInUse {
                path: to.to_path_buf(),
                source,
            })?)
        } else {
            None
        };
        std::fs::remove_dir_all(to).map_err(io(to))?;
    }
    std::fs::rename(&staging, to).map_err(io(to))?;
    Ok(())
}

/// Starts `exe serve --data-dir data_dir --nats-url urls` plus `extra` as a [`Supervised`]
/// child in its own process group (a Ctrl-C in the terminal reaches only the caller, which
/// stops its children in order), its stdout and stderr going to `log`.
///
/// # Errors
/// I/O errors creating the log or spawning.
pub fn spawn_instance(
    exe: &Path,
    data_dir: &Path,
    urls: &[String],
    extra: &[String],
    log: &Path,
) -> Result<Supervised, LocalClusterError> {
    let out = std::fs::File::create(log).map_err(io(log))?;
    let err = out.try_clone().map_err(io(log))?;
    let child = tokio::process::Command::new(exe)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--nats-url")
        .arg(urls.join(","))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(io(exe))?;
    Ok(Supervised::watch(child))
}

fn staging_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    dir.with_file_name(name)
}

/// Copies a dir tree; dirs are made 0700 (a data dir holds the master key), files keep
/// their modes; sled's lock file stays behind.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != LOCK_FILE {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_count_up_and_routes_name_the_others() {
        let first = FirstPorts { client: 4222, http: 8222, route: 6222 };
        let plan = ClusterPlan::new(Path::new("/o"), "127.0.0.1", 3, Some(first)).unwrap();
        assert_eq!(plan.urls()[2], "nats://127.0.0.1:4224");
        assert_eq!(plan.nodes[1].settings.server_name, "authd-2");
        assert_eq!(plan.nodes[1].out_dir, Path::new("/o/authd-2"));
        assert_eq!(plan.urls_from(1)[0], "nats://127.0.0.1:4223");
        assert_eq!(plan.urls_from(1)[2], "nats://127.0.0.1:4222");
        let conf = plan.local_conf(0);
        assert!(conf.starts_with(MANAGED_MARK));
        assert!(conf.contains("listen: \"127.0.0.1:6222\""), "{conf}");
        assert!(conf.contains("nats-route://127.0.0.1:6223"), "{conf}");
        assert!(!conf.contains("nats-route://127.0.0.1:6222"), "{conf}");
        assert!(server_config::has_jetstream_block(&conf));
        let far = FirstPorts { client: 65535, http: 8222, route: 6222 };
        assert!(ClusterPlan::new(Path::new("/o"), "127.0.0.1", 2, Some(far)).is_err());
    }

    #[test]
    fn free_ports_are_distinct_per_server() {
        let plan = ClusterPlan::new(Path::new("/o"), "127.0.0.1", 2, None).unwrap();
        assert_ne!(plan.nodes[0].settings.port, 0);
        assert_ne!(plan.nodes[0].route_port, plan.nodes[1].route_port);
    }

    #[tokio::test]
    async fn a_copy_is_replaced_whole_and_never_under_a_running_instance() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("data"), dir.path().join("data-1"));
        std::fs::create_dir_all(bootstrap::store_dir(&from)).unwrap();
        std::fs::write(from.join("master.key"), "k1").unwrap();
        std::fs::write(bootstrap::store_dir(&from).join(LOCK_FILE), "").unwrap();
        refresh_copy(&from, &to).await.unwrap();
        assert_eq!(std::fs::read_to_string(to.join("master.key")).unwrap(), "k1");
        assert!(!bootstrap::store_dir(&to).join(LOCK_FILE).exists());
        std::fs::write(to.join("stale"), "").unwrap();
        std::fs::write(from.join("master.key"), "k2").unwrap();
        refresh_copy(&from, &to).await.unwrap();
        assert_eq!(std::fs::read_to_string(to.join("master.key")).unwrap(), "k2");
        assert!(!to.join("stale").exists());
        let _held = StoreLock::take(&bootstrap::store_dir(&to)).unwrap();
        let refused = refresh_copy(&from, &to).await;
        assert!(matches!(refused, Err(LocalClusterError::CopyInUse { .. })), "{refused:?}");
        assert!(to.join("master.key").exists(), "the copy in use is left alone");
    }
}
