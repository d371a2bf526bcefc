//! A 3-server nats-server cluster on loopback with JetStream, one `init --store jetstream
//! --replicas 3`, and nats-authd instances as processes of the built binary (so they can be
//! killed with SIGKILL), each on its own copy of the data dir.
//!
//! Included by tests with `#[path = "common/cluster.rs"] mod cluster;` next to `mod common;`
//! (tests/common/mod.rs is shared by every test file).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use async_nats::Client;
use nats_authd::api::ops::GetStatus;
use nats_authd::authority::Authority;
use nats_authd::bootstrap::{self, InitExtras, InitOptions, MasterKeyOptions};
use nats_authd::client::AdminClient;
use nats_authd::connection::{self, ConnectionSettings};
use nats_authd::local_cluster::{self, ClusterPlan};
use nats_authd::model;
use nats_authd::names::API_PREFIX;
use nats_authd::nats_server::NatsServer;
use nats_authd::server_config::ServerSettings;
use nats_authd::store::choice::{Backend, StoreRequest};
use tempfile::TempDir;

use crate::common::{nats_authd, nats_server_bin};

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
    /// Names, ports and dirs of the servers (what `up --cluster` uses too).
    pub plan: ClusterPlan,
    pub nodes: Vec<Node>,
    /// Admin creds (the same admin for every server).
    pub admin_creds: PathBuf,
}

impl Cluster {
    /// `init --store jetstream --replicas 3` and the servers of a [`ClusterPlan`] on free
    /// ports, configured and started by `nats_authd::local_cluster` as `up --cluster 3`
    /// does; returns once JetStream has a meta leader.
    pub async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        // The plan's ports are free when picked, but tests run in parallel and another one can
        // take a port before the server binds it: start again on new ports, a bounded number
        // of times, saying why.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Cluster::try_start().await {
                Ok(cluster) => return cluster,
                Err(e) if attempt < ATTEMPTS => {
                    eprintln!(
                        "starting the cluster failed (attempt {attempt}): {e}; again on new ports"
                    )
                }
                Err(e) => panic!("starting the cluster failed {ATTEMPTS} times: {e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn try_start() -> Result<Cluster, local_cluster::LocalClusterError> {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let plan = ClusterPlan::new(dir.path(), "127.0.0.1", 3, None).unwrap();
        // Before init, which would write a local.conf with JetStream only.
        local_cluster::write_local_confs(&plan).await.unwrap();
        let options = InitOptions {
            layout: plan.nodes[0].layout(&data_dir),
            master_key: MasterKeyOptions::default(),
            server: plan.nodes[0].settings.clone(),
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
        local_cluster::write_configs(&outcome.authority, &data_dir, &plan, &nats_server_bin())
            .await
            .unwrap();
        drop(outcome);
        let servers =
            local_cluster::start_servers(&nats_server_bin(), &plan, Duration::from_secs(15))
                .await?;
        let nodes = plan
            .nodes
            .iter()
            .zip(servers)
            .map(|(node, server)| Node {
                settings: node.settings.clone(),
                out_dir: node.out_dir.clone(),
                server: Some(server),
            })
            .collect();
        let admin_creds = plan.nodes[0].out_dir.join("admin.creds");
        let cluster = Cluster { dir, data_dir, plan, nodes, admin_creds };
        cluster.await_meta_leader(Duration::from_secs(20)).await;
        Ok(cluster)
    }

    /// Waits until every server names a JetStream meta leader.
    pub async fn await_meta_leader(&self, within: Duration) {
        local_cluster::await_meta_leader(&self.plan, within).await.unwrap();
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
        local_cluster::refresh_copy_blocking(&self.data_dir, &data_dir).unwrap();
        let urls = self.plan.urls_from(primary);
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
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until it logs that it serves; returns its instance id (from the log).
    pub async fn serving(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log_text();
            if log.contains("serving prefix") {
                let id = log
                    .lines()
                    .find_map(|line| line.split_once(" instance=").map(|(_, id)| id.trim()))
                    .expect("an instance line before serving");
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "instance {} is not serving:\n{log}", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many callout decisions it has logged (at debug, just after each answer).
    pub fn decisions(&self) -> usize {
        self.log_text().matches("callout decided").count()
    }

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
