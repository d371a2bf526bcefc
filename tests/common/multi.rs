//! Several nats-authd instances in one test: a plain JetStream server whose store two `Db`s
//! share (two clients, as two instances would), and a cluster of servers running the
//! generated operator-mode config.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nats_authd::authority::Authority;
use nats_authd::bootstrap::{self, Layout};
use nats_authd::model;
use nats_authd::nats_server::NatsServer;
use nats_authd::server_config::ServerSettings;
use nats_authd::store::jetstream::{JetStreamOptions, JetStreamStore};
use nats_authd::store::{Batch, Db, Expect, Op};
use nats_authd::vault::MasterKey;
use tempfile::TempDir;

use nats_authd::app;
use tokio_util::sync::CancellationToken;

use super::{free_port, nats_server_bin, Running, Stack};

/// A nats-server with JetStream and no auth, on a free loopback port.
pub struct JsServer {
    pub addr: String,
    _server: NatsServer,
    _dir: TempDir,
}

impl JsServer {
    /// Starts it.
    pub async fn start() -> JsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("nats-server.conf");
        let store_dir = dir.path().join("js");
        std::fs::write(
            &config,
            format!("listen: 127.0.0.1:{port}\njetstream {{ store_dir: {store_dir:?} }}\n"),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let server = NatsServer::start(
            &nats_server_bin(),
            &config,
            &dir.path().join("nats-server.log"),
            &addr,
            &[],
            Duration::from_secs(15),
        )
        .await
        .unwrap();
        JsServer { addr, _server: server, _dir: dir }
    }

    /// A client of it.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(format!("nats://{}", self.addr)).await.unwrap()
    }

    /// A `Db` over the shared JetStream store, on its own connection: one "instance".
    pub async fn db(&self) -> Db {
        let store =
            JetStreamStore::open(self.client().await, &JetStreamOptions::default()).await.unwrap();
        Db::new(Arc::new(store))
    }
}

/// More servers for a [`Stack`]: each runs the stack's generated config for its own ports,
/// and all of them (the stack's own server included) are routed into one cluster.
pub struct Cluster {
    /// Client URLs, the stack's server first.
    pub urls: Vec<String>,
    _servers: Vec<NatsServer>,
}

impl Cluster {
    /// Starts `size` servers (the stack's must not be running: it is started here as the first
    /// member, with the cluster block in its `local.conf`).
    pub async fn start(stack: &mut Stack, size: usize) -> Cluster {
        assert!(stack.server.is_none(), "the cluster starts the stack's server itself");
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let route_urls: Vec<String> =
            routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        let cluster_block = |port: u16| {
            format!(
                "cluster {{\n  name: authd-test\n  listen: \"127.0.0.1:{port}\"\n  routes: [{}]\n}}\n",
                route_urls.join(", ")
            )
        };
        let mut servers = Vec::new();
        let mut urls = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let (layout, settings) = if i == 0 {
                (stack.layout.clone(), stack.settings.clone())
            } else {
                let layout = Layout {
                    data_dir: stack.layout.data_dir.clone(),
                    out_dir: stack.dir.path().join(format!("out-{i}")),
                };
                let settings = ServerSettings {
                    host: "127.0.0.1".into(),
                    port: free_port(),
                    http_port: free_port(),
                    server_name: format!("authd-test-{i}"),
                };
                bootstrap::write_outputs(stack.authority(), &layout, &settings, model::now())
                    .await
                    .unwrap();
                (layout, settings)
            };
            write_local(&layout, &cluster_block(*route));
            let server = NatsServer::start(
                &nats_server_bin(),
                &layout.config_file(),
                &stack.dir.path().join(format!("nats-{i}.log")),
                &settings.listen_addr(),
                &[],
                Duration::from_secs(15),
            )
            .await
            .unwrap();
            urls.push(settings.client_url());
            servers.push(server);
        }
        Cluster { urls, _servers: servers }
    }
}

fn write_local(layout: &Layout, text: &str) {
    assert!(Path::new(&layout.out_dir).is_dir(), "init wrote {}", layout.out_dir.display());
    std::fs::write(layout.local_config_file(), text).unwrap();
}

impl JsServer {
    /// Copies every record of `stack`'s store into the shared JetStream store and opens an
    /// [`Authority`] over it per instance (each with its own connection), as instances that
    /// share one store would have.
    pub async fn shared_authorities(&self, stack: &Stack, instances: usize) -> Vec<Authority> {
        let rows = stack.authority().db().export().await.unwrap();
        let first = self.db().await;
        for chunk in rows.chunks(500) {
            let mut batch = Batch::new();
            for (tree, key, value) in chunk {
                batch.push(Op::Put {
                    tree: *tree,
                    key: key.clone(),
                    value: value.clone(),
                    expect: Expect::Any,
                });
            }
            first.commit(batch).await.unwrap();
        }
        let master = stack.authority().master();
        let mut out = Vec::new();
        for _ in 0..instances {
            let key = MasterKey::from_text(&master.to_text(), "test").unwrap();
            out.push(Authority::open(self.db().await, key).await.unwrap());
        }
        out
    }
}

/// Runs one instance of the service over `authority` (e.g. one of
/// [`JsServer::shared_authorities`]) with `settings`.
pub fn run_instance(authority: &Authority, settings: app::Settings) -> Running {
    let stop = CancellationToken::new();
    let task = tokio::spawn(app::run(authority.clone(), settings, stop.clone().cancelled_owned()));
    Running { stop, task: Some(task) }
}

impl Running {
    /// Ends it as a crash would: the task is dropped mid-flight, nothing is released.
    pub async fn kill(mut self) {
        let task = self.task.take().unwrap();
        task.abort();
        let _ = task.await;
    }
}
