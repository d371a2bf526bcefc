//! A 3-server nats-server cluster on loopback with JetStream, one `init --store jetstream
//! --replicas 3`, and nats-authd instances as processes of the built binary (so they can be
//! killed with SIGKILL), each on its own copy of the data dir.
//!
//! Included by tests with `#[path = "common/cluster.rs"] mod cluster;` next to `mod common;`
//! (tests/common/mod.rs is shared by every test file).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use async_nats::Client;
use nats_authd::api::ops::GetStatus;
use nats_authd::authority::Authority;
use nats_authd::bootstrap::{self, InitExtras, InitOptions, Layout, MasterKeyOptions};
use nats_authd::client::AdminClient;
use nats_authd::connection::{self, ConnectionSettings};
use nats_authd::model;
use nats_authd::names::API_PREFIX;
use nats_authd::nats_server::{self, NatsServer};
use nats_authd::server_config::ServerSettings;
use nats_authd::store::choice::{Backend, StoreRequest};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{free_port, nats_authd, nats_server_bin};

/// One server of the cluster.
pub struct Node {
    pub settings: ServerSettings,
    /// Its out dir: config, local.conf, resolver dir, JetStream store.
    pub out_dir: PathBuf,
    pub server: Option<NatsServer>,
}

impl Node {
    /// Its client URL.
    pub fn url(&self) -> String {
        self.settings.client_url()
    }

    /// Its resolver dir (where the full resolver keeps account JWTs).
    pub fn resolver_dir(&self) -> PathBuf {
        self.out_dir.join("jwt")
    }
}

/// The cluster, the init'd data dir (the original, never served) and its instances.
pub struct Cluster {
    pub dir: TempDir,
    /// The init'd data dir; instances run on copies.
    pub data_dir: PathBuf,
    pub nodes: Vec<Node>,
    /// Admin creds (the same admin for every server).
    pub admin_creds: PathBuf,
}

impl Cluster {
    /// `init --store jetstream --replicas 3`, a config per server (own ports, server name,
    /// resolver and JetStream dirs, routes to the others), checked with `nats-server -t`,
    /// then all three started; returns once JetStream has a meta leader.
    pub async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let settings: Vec<ServerSettings> = (0..3)
            .map(|i| ServerSettings {
                host: "127.0.0.1".into(),
                port: free_port(),
                http_port: free_port(),
                server_name: format!("c{i}"),
            })
            .collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let options = InitOptions {
            layout: Layout { data_dir: data_dir.clone(), out_dir: dir.path().join("c0") },
            master_key: MasterKeyOptions::default(),
            server: settings[0].clone(),
            operator_name: "cluster-operator".into(),
            xkey: true,
        };
        let request = StoreRequest { backend: Some(Backend::Jetstream), replicas: Some(3) };
        let outcome = bootstrap::init_with(
            &options,
            &InitExtras { store: request, ..InitExtras::default() },
            model::now(),
        )
        .await
        .unwrap();
        let authority = outcome.authority;
        let mut nodes = Vec::new();
        for (i, settings) in settings.into_iter().enumerate() {
            let out_dir = dir.path().join(format!("c{i}"));
            std::fs::create_dir_all(&out_dir).unwrap();
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            // Written before the outputs: init never overwrites a local.conf.
            let local = format!(
                "jetstream {{ store_dir: \"{}\" }}\ncluster {{\n  name: \"authd-test\"\n  \
                 listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                out_dir.join("jetstream").display(),
                routes[i],
                others.join(", ")
            );
            // Server 0's out dir is init's: its local.conf (a jetstream block only) is replaced.
            std::fs::write(out_dir.join(bootstrap::LOCAL_CONFIG), &local).unwrap();
            let layout = Layout { data_dir: data_dir.clone(), out_dir: out_dir.clone() };
            bootstrap::write_outputs(&authority, &layout, &settings, model::now()).await.unwrap();
            nats_server::check_config(&nats_server_bin(), &layout.config_file()).await.unwrap();
            nodes.push(Node { settings, out_dir, server: None });
        }
        drop(authority);
        let started = futures::future::join_all(nodes.iter().enumerate().map(|(i, node)| {
            let log = dir.path().join(format!("nats-c{i}.log"));
            let config = node.out_dir.join("nats-server.conf");
            let addr = node.settings.listen_addr();
            async move {
                NatsServer::start(
                    &nats_server_bin(),
                    &config,
                    &log,
                    &addr,
                    &[],
                    Duration::from_secs(15),
                )
                .await
                .unwrap()
            }
        }))
        .await;
        for (node, server) in nodes.iter_mut().zip(started) {
            node.server = Some(server);
        }
        let admin_creds = dir.path().join("c0").join("admin.creds");
        let cluster = Cluster { dir, data_dir, nodes, admin_creds };
        cluster.await_meta_leader(Duration::from_secs(20)).await;
        cluster
    }

    /// Polls every server's `/jsz` until each names a meta leader.
    pub async fn await_meta_leader(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for node in &self.nodes {
            let addr = format!("127.0.0.1:{}", node.settings.http_port);
            loop {
                if http_get(&addr, "/jsz").await.is_some_and(|body| {
                    body.split("\"meta_cluster\"").nth(1).is_some_and(|m| m.contains("\"leader\""))
                }) {
                    break;
                }
                assert!(Instant::now() < deadline, "no JetStream meta leader at {addr}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Every server's client URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Starts an instance on a fresh copy of the data dir, connecting to server `primary`
    /// first and then the others.
    pub fn instance(&self, name: &str, primary: usize) -> Instance {
        self.instance_with(name, primary, &[])
    }

    /// As [`Cluster::instance`], with more `serve` flags.
    pub fn instance_with(&self, name: &str, primary: usize, flags: &[&str]) -> Instance {
        let data_dir = self.dir.path().join(format!("instance-{name}"));
        copy_dir(&self.data_dir, &data_dir);
        let mut urls = self.urls();
        urls.rotate_left(primary);
        let log = self.dir.path().join(format!("instance-{name}.log"));
        let child = nats_authd(self.dir.path())
            .arg("--log")
            .arg("info,async_nats=warn,nats_authd::callout=debug")
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--nats-url")
            .arg(urls.join(","))
            .args(["--initial-backoff", "0.05", "--max-backoff", "0.5"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Instance { child, log, name: name.to_string() }
    }

    /// A management client connected to server `node`, once some instance answers there.
    pub async fn admin(&self, node: usize) -> AdminClient {
        let creds = std::fs::read_to_string(&self.admin_creds).unwrap();
        let client = async_nats::ConnectOptions::with_credentials(&creds)
            .unwrap()
            .connect(self.nodes[node].url())
            .await
            .unwrap();
        let admin = AdminClient::new(client, API_PREFIX, Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(30);
        while admin.send(&GetStatus {}).await.is_err() {
            assert!(Instant::now() < deadline, "no instance answered at server {node}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admin
    }

    /// The original data dir's trust chain (locks it: instances run on copies).
    pub async fn authority(&self) -> Authority {
        bootstrap::open(&self.data_dir, &MasterKeyOptions::default()).await.unwrap()
    }

    /// A service-user connection to server `node` alone.
    pub async fn service_client(&self, authority: &Authority, node: usize) -> Client {
        let settings = ConnectionSettings {
            urls: vec![self.nodes[node].url()],
            require_nats: true,
            ..ConnectionSettings::default()
        };
        connection::connect(authority, &settings, std::future::pending()).await.unwrap().client
    }
}

/// An instance of nats-authd running as a child process; killed (SIGKILL) on drop.
pub struct Instance {
    child: Child,
    /// Its log (stderr).
    pub log: PathBuf,
    pub name: String,
}

impl Instance {
    /// SIGKILL, as a crash would; waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies a data dir (store, master key, store.json) as an operator would to another host;
/// sled's lock file is left behind.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != nats_authd::store::sled::LOCK_FILE {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The body of `GET path` on the monitoring port at `addr`, if it answers.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}
