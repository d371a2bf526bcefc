//! End-to-end load on a throw-away loopback stack: nats-server (started here, on free
//! loopback ports) and nats-authd (in this process), each callout measurement printed beside
//! its direct-creds baseline from the same run, modes interleaved so that a noisy machine
//! skews them alike. Prints numbers; asserts nothing.
//!
//! ```sh
//! scripts/ensure-nats-server      # once; or set NATS_SERVER_BIN
//! cargo run --release --example load -- [--seq 200] [--conc 50] [--conc-total 400] \
//!     [--rounds 3] [--storm 300,1000] [--mgmt 100] [--kicks 5] [--store sled|jetstream] \
//!     [--xkey true|false] [--auth-timeout SECS]
//! ```
//!
//! The concurrent table also gives CPU per connect, from `/proc` schedstat: the service's
//! threads in this process (everything but the load client's tokio workers and the main
//! thread) and nats-server's. `LOAD_THREADS=1` prints CPU by thread name as well, and
//! `LOAD_LOG=<filter>` (e.g. `warn`) the service's log.
//!
//! Bounded: every connect and request has a time-out, storms wait at most 20 s, at most
//! `2 × max(storm)` client connections exist at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use async_nats::{Client, ConnectOptions, Event};
use futures::StreamExt;
use nats_authd::app;
use nats_authd::bootstrap::{self, InitExtras, InitOptions, Layout, MasterKeyOptions};
use nats_authd::client::AdminClient;
use nats_authd::connection::ConnectionSettings;
use nats_authd::model;
use nats_authd::names::API_PREFIX;
use nats_authd::nats_server::{self, NatsServer};
use nats_authd::server_config::ServerSettings;
use nats_authd::service::Status;
use nats_authd::store::choice::{Backend, StoreRequest};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

// The service runs in this process: on the allocator the `nats-authd` binary uses, so that its
// CPU per login is the binary's (glibc's malloc was ~12 % of the service's samples here).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STORM_WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "load-password-1";

struct Args {
    seq: usize,
    conc: usize,
    conc_total: usize,
    rounds: usize,
    storms: Vec<usize>,
    mgmt: usize,
    kicks: usize,
    /// The store backend (`sled` or `jetstream`, on the one loopback server).
    store: Backend,
    /// Whether callout traffic is sealed with AUTH's xkey (`init`'s default; `--no-xkey`).
    xkey: bool,
    /// nats-server's auth timeout in seconds (the callout's time-out), put in `local.conf`;
    /// `None`: the server's default (2 s).
    auth_timeout: Option<f64>,
}

const USAGE: &str = "\
usage: load [--seq N] [--conc N] [--conc-total N] [--rounds N] [--storm N,N,...] [--mgmt N]
            [--kicks N] [--store sled|jetstream] [--xkey true|false] [--auth-timeout SECS]

Starts nats-server and nats-authd on loopback and prints each callout figure beside its
direct-creds baseline. Defaults: --seq 200 --conc 50 --conc-total 400 --rounds 3
--storm 300,1000 --mgmt 100 --kicks 5 --store sled --xkey true, the server's own auth
timeout (2 s; --auth-timeout writes `authorization { timeout }` into local.conf). An empty
--storm skips the storms. LOAD_THREADS=1 adds CPU by thread name; LOAD_LOG=<filter> shows the service's log.";

fn args() -> Result<Args> {
    let mut a = Args {
        seq: 200,
        conc: 50,
        conc_total: 400,
        rounds: 3,
        storms: vec![300, 1000],
        mgmt: 100,
        kicks: 5,
        store: Backend::Sled,
        xkey: true,
        auth_timeout: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n = || value.parse::<usize>().with_context(|| format!("{flag} {value}"));
        match flag.as_str() {
            "--seq" => a.seq = n()?,
            "--conc" => a.conc = n()?.max(1),
            "--conc-total" => a.conc_total = n()?,
            "--rounds" => a.rounds = n()?.max(1),
            "--mgmt" => a.mgmt = n()?,
            "--kicks" => a.kicks = n()?,
            "--xkey" => a.xkey = value.parse().with_context(|| format!("--xkey {value}"))?,
            "--auth-timeout" => {
                let secs: f64 = value.parse().with_context(|| format!("--auth-timeout {value}"))?;
                a.auth_timeout = Some(secs)
            }
            "--store" => {
                a.store = <Backend as clap::ValueEnum>::from_str(&value, true)
                    .map_err(|e| anyhow!("--store {value}: {e}"))?
            }
            "--storm" => {
                a.storms = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            other => return Err(anyhow!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn nats_server_bin() -> Result<std::path::PathBuf> {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools");
    Ok(nats_server::find_in_tools(&tools)?)
}

/// How a client logs in.
#[derive(Clone)]
enum Mode {
    /// API token through the callout.
    Token { sentinel: Arc<String>, token: String },
    /// Password through the callout (cached after the first verification).
    Password { sentinel: Arc<String>, user: String },
    /// A creds file: nats-server checks the JWT itself, no callout (the baseline).
    Creds { creds: Arc<String> },
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Token { .. } => "token (callout)",
            Mode::Password { .. } => "password, cached (callout)",
            Mode::Creds { .. } => "direct creds (baseline)",
        }
    }

    fn options(&self) -> Result<ConnectOptions> {
        Ok(match self {
            Mode::Token { sentinel, token } => {
                ConnectOptions::with_token(token.clone()).credentials(sentinel)?
            }
            Mode::Password { sentinel, user } => {
                ConnectOptions::with_user_and_password(user.clone(), PASSWORD.into())
                    .credentials(sentinel)?
            }
            Mode::Creds { creds } => ConnectOptions::with_credentials(creds)?,
        })
    }

    /// Connects and round-trips once: the connection is usable.
    async fn connect(&self, url: &str) -> Result<Client> {
        let client = tokio::time::timeout(CONNECT_TIMEOUT, self.options()?.connect(url))
            .await
            .context("connect timed out")??;
        client.flush().await?;
        Ok(client)
    }
}

/// CPU time used so far, read from `/proc` schedstat (nanoseconds on the CPU, no tick rounding).
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// Every thread of this process that is not the load client's: the service's runtime,
    /// its blocking pool, password workers and sled's threads.
    service: Duration,
    /// Every thread of nats-server.
    server: Duration,
}

/// Name of the service runtime's threads; the client's are tokio's default name.
const SERVICE_THREADS: &str = "authd-svc";

fn on_cpu(task: &std::path::Path) -> Duration {
    let ns = std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

impl Cpu {
    fn now(server_pid: Option<u32>) -> Cpu {
        let mut cpu = Cpu::default();
        let me = std::process::id().to_string();
        for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            // The main thread and tokio's default-named workers are the load client.
            if task.file_name() != me.as_str() && !comm.starts_with("tokio-") {
                cpu.service += on_cpu(&path);
            }
        }
        if let Some(pid) = server_pid {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
            for task in tasks.into_iter().flatten().flatten() {
                cpu.server += on_cpu(&task.path());
            }
        }
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            service: self.service.saturating_sub(before.service),
            server: self.server.saturating_sub(before.server),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Stack {
    _dir: tempfile::TempDir,
    layout: Layout,
    settings: ServerSettings,
    bin: std::path::PathBuf,
    server: Option<NatsServer>,
}

impl Stack {
    async fn start_server(&mut self) -> Result<()> {
        let log = self._dir.path().join("nats.log");
        self.server = Some(
            NatsServer::start(
                &self.bin,
                &self.layout.config_file(),
                &log,
                &self.settings.listen_addr(),
                &[],
                Duration::from_secs(15),
            )
            .await?,
        );
        Ok(())
    }

    fn url(&self) -> String {
        self.settings.client_url()
    }
}

/// When the service logged its connection restored: the service's own reconnect time, which
/// no client can observe without its own reconnect delay in the way.
#[derive(Clone, Default)]
struct Restored(Arc<std::sync::Mutex<Vec<Instant>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Restored {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 |= format!("{v:?}").contains("connection restored");
                }
            }
        }
        if event.metadata().target() == "nats_authd::connection" {
            let mut found = Message(false);
            event.record(&mut found);
            if found.0 {
                self.0.lock().expect("restored lock").push(Instant::now());
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let restored = Restored::default();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        let only_connection = tracing_subscriber::filter::Targets::new()
            .with_target("nats_authd::connection", tracing::Level::INFO);
        let layer = tracing_subscriber::Layer::with_filter(restored.clone(), only_connection);
        // `LOAD_LOG=warn` (any filter) also prints the service's log to stderr.
        let log = std::env::var("LOAD_LOG").ok().map(|filter| {
            tracing_subscriber::Layer::with_filter(
                tracing_subscriber::fmt::layer().with_writer(std::io::stderr),
                tracing_subscriber::EnvFilter::new(filter),
            )
        });
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(layer).with(log),
        )?;
    }
    let dir = tempfile::tempdir()?;
    let layout = Layout { data_dir: dir.path().join("data"), out_dir: dir.path().join("out") };
    let settings = ServerSettings {
        host: "127.0.0.1".into(),
        port: free_port()?,
        http_port: free_port()?,
        server_name: "load".into(),
    };
    let options = InitOptions {
        layout: layout.clone(),
        master_key: MasterKeyOptions::default(),
        server: settings.clone(),
        operator_name: "load".into(),
        xkey: args.xkey,
    };
    let store = StoreRequest { backend: Some(args.store), replicas: None };
    let outcome = bootstrap::init_with(
        &options,
        &InitExtras { store, ..InitExtras::default() },
        model::now(),
    )
    .await?;
    let (authority, store) = (outcome.authority, outcome.store);
    if let Some(secs) = args.auth_timeout {
        let local = layout.out_dir.join("local.conf");
        let mut text = std::fs::read_to_string(&local)?;
        text.push_str(&format!("\nauthorization {{ timeout: {secs} }}\n"));
        std::fs::write(&local, text)?;
    }
    println!(
        "store: {store}; callout sealed with an xkey: {}; auth timeout: {}",
        args.xkey,
        args.auth_timeout.map_or("the server's (2 s)".to_string(), |s| format!("{s} s"))
    );
    let mut stack = Stack { _dir: dir, layout, settings, bin: nats_server_bin()?, server: None };
    stack.start_server().await?;
    let url = stack.url();

    // The service with its production connection settings (only the URL differs), on its own
    // runtime: in production it is its own process, not one more task among 2,000 clients.
    let stop = CancellationToken::new();
    let connection = ConnectionSettings { urls: vec![url.clone()], ..Default::default() };
    let service_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVICE_THREADS)
        .enable_all()
        .build()?;
    let service = service_rt.spawn(app::run(
        authority,
        app::Settings { connection, store, ..app::Settings::default() },
        stop.clone().cancelled_owned(),
    ));

    // Whatever happens in the runs, the service's runtime is shut down before it is dropped
    // (dropping it here would panic and hide the error).
    let runs = async {
        let admin_creds = std::fs::read_to_string(stack.layout.admin_creds())?;
        let admin_nats = ConnectOptions::with_credentials(&admin_creds)?.connect(&url).await?;
        let admin = AdminClient::new(admin_nats.clone(), API_PREFIX, Duration::from_secs(10));
        let t = Instant::now();
        while admin.call("status", &json!({})).await.is_err() {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(15), "the service never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admin.call("account.create", &json!({ "name": "acme" })).await?;
        admin
            .call(
                "role.create",
                &json!({ "account": "acme", "name": "all",
                "publish": {"allow": [">"]}, "subscribe": {"allow": [">"]} }),
            )
            .await?;
        for (name, password) in
            [("p", Some(PASSWORD)), ("t", None), ("d", None), ("k", Some(PASSWORD))]
        {
            let mut body = json!({ "account": "acme", "name": name, "role": "all" });
            if let Some(pw) = password {
                body["password"] = json!(pw);
            }
            admin.call("user.create", &body).await?;
        }
        let token = admin
            .call("token.create", &json!({ "account": "acme", "user": "t", "description": "load" }))
            .await?["token"]
            .as_str()
            .context("token")?
            .to_string();
        let creds = admin.call("user.creds", &json!({ "account": "acme", "name": "d" })).await?
            ["creds"]
            .as_str()
            .context("creds")?
            .to_string();
        let sentinel = Arc::new(std::fs::read_to_string(stack.layout.sentinel_creds())?);
        let modes = [
            Mode::Token { sentinel: sentinel.clone(), token },
            Mode::Password { sentinel: sentinel.clone(), user: "p".into() },
            Mode::Creds { creds: Arc::new(creds) },
        ];
        // Warm up: the first password login runs argon2, then the cache answers.
        for mode in &modes {
            mode.connect(&url).await?.drain().await?;
        }

        sequential(&modes, &url, args.seq).await?;
        let server_pid = stack.server.as_ref().and_then(NatsServer::pid);
        concurrent(&modes, &url, args.conc, args.conc_total, args.rounds, server_pid).await?;
        management(&admin, &admin_nats, args.mgmt).await?;
        kicks(&admin, &modes[0], &sentinel, &url, args.kicks).await?;
        for &n in &args.storms {
            storm(&mut stack, &restored, &modes[0], &modes[2], n).await?;
        }
        anyhow::Ok(())
    }
    .await;

    stop.cancel();
    let served = service.await;
    service_rt.shutdown_background();
    runs?;
    served??;
    if let Some(server) = stack.server.take() {
        server.stop(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// Sequential connect (connect + one round trip), modes interleaved, rotating which goes first.
async fn sequential(modes: &[Mode], url: &str, n: usize) -> Result<()> {
    let mut times = vec![Vec::with_capacity(n); modes.len()];
    for i in 0..n {
        for k in 0..modes.len() {
            let m = (i + k) % modes.len();
            let t = Instant::now();
            let client = modes[m].connect(url).await?;
            times[m].push(t.elapsed());
            client.drain().await?;
        }
    }
    println!("\n## Sequential connect + flush ({n} each, interleaved)\n");
    println!("| mode | p50 | p99 |\n|---|---:|---:|");
    for (mode, mut t) in modes.iter().zip(times) {
        t.sort();
        println!(
            "| {} | {} | {} |",
            mode.name(),
            ms(percentile(&t, 0.5)),
            ms(percentile(&t, 0.99))
        );
    }
    Ok(())
}

/// `conc` tasks connecting `total` times in all, per mode; rounds interleave the modes.
async fn concurrent(
    modes: &[Mode],
    url: &str,
    conc: usize,
    total: usize,
    rounds: usize,
    server_pid: Option<u32>,
) -> Result<()> {
    let mut rates = vec![Vec::new(); modes.len()];
    let mut cpu = vec![Cpu::default(); modes.len()];
    let mut failures = vec![0usize; modes.len()];
    for round in 0..rounds {
        for k in 0..modes.len() {
            let m = (round + k) % modes.len();
            let left = Arc::new(AtomicUsize::new(total));
            let before = Cpu::now(server_pid);
            let t = Instant::now();
            let workers: Vec<_> = (0..conc)
                .map(|_| {
                    let (mode, url, left) = (modes[m].clone(), url.to_string(), left.clone());
                    tokio::spawn(async move {
                        let mut failed = 0;
                        while left
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                            .is_ok()
                        {
                            match mode.connect(&url).await {
                                Ok(c) => drop(c.drain().await),
                                Err(_) => failed += 1,
                            }
                        }
                        failed
                    })
                })
                .collect();
            for w in workers {
                failures[m] += w.await?;
            }
            rates[m].push(total as f64 / t.elapsed().as_secs_f64());
            let used = Cpu::now(server_pid).since(before);
            cpu[m].service += used.service;
            cpu[m].server += used.server;
        }
    }
    if std::env::var_os("LOAD_THREADS").is_some() {
        let mut by: std::collections::BTreeMap<String, Duration> = Default::default();
        for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            *by.entry(comm.trim().to_string()).or_default() += on_cpu(&task.path());
        }
        eprintln!("{by:#?}");
    }
    println!("\n## Concurrent connects ({conc} at a time, {total} per round, {rounds} rounds)\n");
    println!(
        "| mode | connects/s (median) | failed | CPU per connect: service | nats-server |\n\
         |---|---:|---:|---:|---:|"
    );
    let connects = (total * rounds).max(1) as f64;
    for (((mode, r), f), c) in modes.iter().zip(rates).zip(failures).zip(cpu) {
        println!(
            "| {} | {:.0} | {f} | {:.3} ms | {:.3} ms |",
            mode.name(),
            median(r),
            c.service.as_secs_f64() * 1000.0 / connects,
            c.server.as_secs_f64() * 1000.0 / connects,
        );
    }
    Ok(())
}

/// Management latency, beside a bare NATS request/reply round trip (an echo in this process).
async fn management(admin: &AdminClient, nats: &Client, n: usize) -> Result<()> {
    let echo_subject = format!("load.echo.{}", free_port()?);
    let mut echo = nats.subscribe(echo_subject.clone()).await?;
    let replier = nats.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(msg) = echo.next().await {
            if let Some(reply) = msg.reply {
                let _ = replier.publish(reply, msg.payload).await;
            }
        }
    });
    let (mut get, mut create, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let t = Instant::now();
        nats.request(echo_subject.clone(), "{}".into()).await?;
        bare.push(t.elapsed());
        let t = Instant::now();
        admin.call("user.get", &json!({ "account": "acme", "name": "p" })).await?;
        get.push(t.elapsed());
        let t = Instant::now();
        admin
            .call(
                "user.create",
                &json!({ "account": "acme", "name": format!("m{i}"), "role": "all" }),
            )
            .await?;
        create.push(t.elapsed());
    }
    echo_task.abort();
    println!("\n## Management latency ({n} each, interleaved)\n");
    println!("| call | p50 | p99 |\n|---|---:|---:|");
    for (name, mut t) in
        [("NATS request/reply echo (baseline)", bare), ("user.get", get), ("user.create", create)]
    {
        t.sort();
        println!("| {name} | {} | {} |", ms(percentile(&t, 0.5)), ms(percentile(&t, 0.99)));
    }
    Ok(())
}

/// Deactivate a user with a live callout login: time until its connection is closed.
async fn kicks(
    admin: &AdminClient,
    _token_mode: &Mode,
    sentinel: &Arc<String>,
    url: &str,
    n: usize,
) -> Result<()> {
    let mode = Mode::Password { sentinel: sentinel.clone(), user: "k".into() };
    let mut times = Vec::new();
    let mut missed = 0;
    for _ in 0..n {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let client = tokio::time::timeout(
            CONNECT_TIMEOUT,
            mode.options()?
                .event_callback(move |e| {
                    let tx = tx.clone();
                    async move {
                        if matches!(e, Event::Disconnected | Event::Closed) {
                            let _ = tx.send(Instant::now());
                        }
                    }
                })
                .connect(url),
        )
        .await??;
        client.flush().await?;
        let t = Instant::now();
        admin
            .call("user.update", &json!({ "account": "acme", "name": "k", "active": false }))
            .await?;
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(at)) => times.push(at - t),
            _ => missed += 1,
        }
        drop(client);
        admin
            .call("user.update", &json!({ "account": "acme", "name": "k", "active": true }))
            .await?;
    }
    times.sort();
    println!("\n## Deactivate → live callout connection closed ({n} times)\n");
    println!(
        "p50 {} , max {} , not closed within 10 s: {missed}",
        ms(percentile(&times, 0.5)),
        ms(times.last().copied().unwrap_or_default())
    );
    Ok(())
}

fn is_refusal(error: &str) -> bool {
    error.to_ascii_lowercase().contains("authorization")
}

/// A population of clients that count their reconnects.
struct Population {
    clients: Vec<Client>,
    connected: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
}

impl Population {
    fn back(&self) -> usize {
        let up = |c: &&Client| c.connection_state() == async_nats::connection::State::Connected;
        self.clients.iter().filter(up).count()
    }
}

async fn population(mode: &Mode, url: &str, n: usize) -> Result<Population> {
    let connected = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (mode, url, gate) = (mode.clone(), url.to_string(), gate.clone());
            let (connected, errors) = (connected.clone(), errors.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await?;
                // async-nats's default reconnect policy: what a real client does.
                let options = mode.options()?.event_callback(move |e| {
                    let (connected, errors) = (connected.clone(), errors.clone());
                    async move {
                        match e {
                            Event::Connected => {
                                connected.fetch_add(1, Ordering::SeqCst);
                            }
                            // Refused logins: async-nats reports them as client errors while
                            // reconnecting, as server errors when connected.
                            Event::ServerError(e) if is_refusal(&e.to_string()) => {
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                            Event::ClientError(e) if is_refusal(&e.to_string()) => {
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                    }
                });
                let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(url)).await??;
                client.flush().await?;
                anyhow::Ok(client)
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for t in tasks {
        clients.push(t.await??);
    }
    // The initial connect fires Connected too: count from here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    connected.store(0, Ordering::SeqCst);
    errors.store(0, Ordering::SeqCst);
    Ok(Population { clients, connected, errors })
}

/// Restart nats-server under `n` callout and `n` direct-creds clients: when is each back?
async fn storm(
    stack: &mut Stack,
    restored: &Restored,
    callout: &Mode,
    direct: &Mode,
    n: usize,
) -> Result<()> {
    let url = stack.url();
    // A probe that reconnects every 2 ms, so that "the service answers" is the service's
    // time, not a client's backoff.
    let admin_creds = std::fs::read_to_string(stack.layout.admin_creds())?;
    let probe = ConnectOptions::with_credentials(&admin_creds)?
        .reconnect_delay_callback(|_| Duration::from_millis(2))
        .connect(&url)
        .await?;
    let probe = AdminClient::new(probe, API_PREFIX, Duration::from_millis(500));
    let status = || async {
        probe
            .call("status", &json!({}))
            .await
            .ok()
            .and_then(|v| serde_json::from_value::<Status>(v).ok())
    };
    let populations = [population(callout, &url, n).await?, population(direct, &url, n).await?];
    let first = status().await.context("status")?;
    let before = first.reconnects;
    let down = Instant::now();
    stack.server.take().context("server")?.stop(Duration::from_secs(5)).await;
    let stopped = down.elapsed();
    stack.start_server().await?;
    let restarted = Instant::now();
    let downtime = restarted - down;
    let mut back_at: [Option<Duration>; 2] = [None, None];
    let mut most_at: [Option<Duration>; 2] = [None, None];
    let mut service_at = None;
    while restarted.elapsed() < STORM_WAIT {
        for ((p, at), most) in populations.iter().zip(back_at.iter_mut()).zip(most_at.iter_mut()) {
            let back = p.back();
            if most.is_none() && back * 100 >= n * 99 {
                *most = Some(restarted.elapsed());
            }
            if at.is_none() && back == n {
                *at = Some(restarted.elapsed());
            }
        }
        if service_at.is_none() && status().await.is_some_and(|s| s.reconnects > before) {
            service_at = Some(restarted.elapsed());
        }
        if back_at.iter().all(Option::is_some) && service_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let stragglers settle, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n## Reconnect storm: nats-server restarted under {n} + {n} clients\n");
    let reconnected = restored.0.lock().expect("restored lock").last().copied();
    println!(
        "server down for {} (stop {}); the service's connection restored {} after the new server \
         was ready (negative: before it passed the readiness check); status answered after {}",
        ms(downtime),
        ms(stopped),
        reconnected.map_or("never".into(), |at| {
            if at >= restarted {
                ms(at - restarted)
            } else {
                format!("-{}", ms(restarted - at))
            }
        }),
        service_at.map_or("never".into(), ms)
    );
    println!(
        "| clients (waited ≤ {} s) | 99 % back after | all back after | back | not back | false connects (Connected event, then refused) | refused logins |",
        STORM_WAIT.as_secs()
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let names = [callout.name(), direct.name()];
    for (((p, at), most), name) in populations.iter().zip(back_at).zip(most_at).zip(names) {
        let connected = p.connected.load(Ordering::SeqCst);
        let back = p.back();
        println!(
            "| {name} | {} | {} | {back} | {} | {} | {} |",
            most.map_or("no".into(), ms),
            at.map_or("not all".into(), ms),
            n - back,
            connected.saturating_sub(n),
            p.errors.load(Ordering::SeqCst),
        );
    }
    // Where the refusals came from: answered "no" by the service, or never reached it (the
    // server's own callout time-out, counted by neither).
    if let Some(last) = status().await {
        let (a, b) = (&first.callout, &last.callout);
        println!(
            "\nthe service over the storm: {} allowed, {} refused ({} rate-limited), {} dropped \
             unanswered (expired in the backlog or not verifiable)",
            b.allowed.saturating_sub(a.allowed),
            b.refused.saturating_sub(a.refused),
            b.rate_limited.saturating_sub(a.rate_limited),
            b.dropped.saturating_sub(a.dropped),
        );
    }
    let clients = populations.into_iter().flat_map(|p| p.clients);
    futures::future::join_all(clients.map(|c| async move { drop(c.drain().await) })).await;
    Ok(())
}
