//! The `nats-authd` binary: parses the command line, sets up logging, calls the library.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use nats_authd::api::ops::{GetOperator, GetStatus, ListPending, SysCreds};
use nats_authd::api::ApiRequest;
use nats_authd::bootstrap::{self, InitExtras, InitOutcome};
use nats_authd::cli::{
    output, read_password_stdin, secret_safe_filter, Cli, CliError, ClientArgs, Command, Dispatch,
    InitArgs, OutFile, Sender, ServeArgs, UpArgs, CLIENT_LOG, DEFAULT_LOG, MASTER_KEY_ENV,
};
use nats_authd::client::{AdminClient, ClientError, ConnectFailure, NoAnswer};
use nats_authd::connection::ConnectionSettings;
use nats_authd::local_cluster::{self, ClusterPlan, FirstPorts};
use nats_authd::names::API_PREFIX;
use nats_authd::queue::PendingState;
use nats_authd::server_config::ServerTls;
use nats_authd::store::choice::Backend;
use nats_authd::vault::{self, Existing};
use nats_authd::{app, model, nats_server};
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

// jemalloc, not glibc: with sled's cache bounded, glibc's per-thread arenas kept the evicted
// pages' memory and RSS stayed where it was; jemalloc gives it back (README "Performance").
// mimalloc was measured too and held more than glibc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let default_log = if cli.command.client().is_some() { CLIENT_LOG } else { DEFAULT_LOG };
    let log = cli.log.clone().unwrap_or_else(|| default_log.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&log).unwrap_or_else(|e| {
        eprintln!("nats-authd: ignoring log filter {log:?}: {e}");
        tracing_subscriber::EnvFilter::new(default_log)
    });
    // The user's filter, and then one no filter can lift: async-nats prints message bodies
    // (passwords, creds) at trace, and no log level may show a secret.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter.and(secret_safe_filter()));
    tracing_subscriber::registry().with(layer).init();
    let json = cli.command.client().is_some_and(|c| c.json);
    if let Err(e) = run(cli.command).await {
        let failure = Failure::of(&e);
        if failure.exit == 0 {
            // Whoever read our output has stopped reading (`| head`): nothing went wrong.
            return;
        }
        if json {
            let body = serde_json::json!({
                "error": {"code": failure.code, "kind": failure.kind, "message": format!("{e:#}")}
            });
            eprintln!("{body}");
        } else {
            eprintln!("nats-authd: {e:#}");
        }
        std::process::exit(failure.exit);
    }
}

/// A service error and what to do about it on this command line.
#[derive(Debug)]
struct Hinted(ClientError, &'static str);

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.1)
    }
}

// No `source`: the message already has the cause, and `{:#}` would print it twice.
impl std::error::Error for Hinted {}

/// What a failed command tells a script: its exit code (see [`nats_authd::cli::EXIT_CODES`])
/// and, for `--json`, a code and kind like the service's own error answers.
struct Failure {
    exit: i32,
    code: u16,
    kind: String,
}

impl Failure {
    fn of(error: &anyhow::Error) -> Failure {
        let f = |exit, code, kind: &str| Failure { exit, code, kind: kind.to_string() };
        for cause in error.chain() {
            let client_error = cause
                .downcast_ref::<ClientError>()
                .or_else(|| cause.downcast_ref::<Hinted>().map(|h| &h.0));
            if let Some(e) = client_error {
                return match e {
                    ClientError::Service { code, kind, .. } => {
                        let exit = match code {
                            400 => 2,
                            403 => 6,
                            404 => 3,
                            409 => 4,
                            // The store has no JetStream leader: as unreachable as no server.
                            503 => 5,
                            _ => 1,
                        };
                        Failure { exit, code: *code, kind: kind.clone() }
                    }
                    ClientError::NotAllowed { .. } => f(6, 403, "not_allowed"),
                    ClientError::Request { cause: NoAnswer::NoResponders, .. } => {
                        f(5, 503, "no_responders")
                    }
                    ClientError::Request { cause: NoAnswer::TimedOut, .. } => {
                        f(5, 504, "timed_out")
                    }
                    ClientError::Request { .. } => f(5, 503, "no_answer"),
                    ClientError::Connect { cause: ConnectFailure::NotAuthorized, .. } => {
                        f(6, 403, "not_allowed")
                    }
                    ClientError::Connect { cause: ConnectFailure::BadUrl(_), .. } => {
                        f(2, 400, "invalid")
                    }
                    ClientError::Connect { .. } => f(5, 503, "unreachable"),
                    ClientError::Creds { .. } => f(2, 400, "invalid"),
                    ClientError::Decode { .. } => f(1, 500, "internal"),
                };
            }
            if cause.downcast_ref::<CliError>().is_some() {
                return f(2, 400, "invalid");
            }
            if let Some(e) = cause.downcast_ref::<std::io::Error>() {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return f(0, 0, "");
                }
            }
        }
        f(1, 500, "error")
    }
}

async fn run(command: Command) -> Result<()> {
    let env_key = std::env::var(MASTER_KEY_ENV).ok();
    match command {
        Command::Init(args) => {
            let outcome = init(&args, env_key).await?;
            print_init(&outcome);
            println!("\nStart nats-server:  nats-server -c {}", outcome.outputs.config.display());
            // Everything serve needs that is not its default, so the line can be pasted.
            let tls = args.server_tls.settings();
            let mut serve = format!(
                "nats-authd serve --data-dir {} --nats-url {}",
                args.store.data_dir.display(),
                server_url(&args, tls.as_ref())
            );
            if let Some(file) = &args.store.master_key_file {
                serve.push_str(&format!(" --master-key-file {}", file.display()));
            }
            if let Some(tls) = &tls {
                serve.push_str(&tls_hint(tls.ca_file.as_deref(), tls.verify.then_some(None)));
            }
            println!("Then the service:   {serve}");
            println!("Or both at once:    nats-authd up");
            Ok(())
        }
        Command::Up(args) => up(args, env_key, shutdown_signal()?).await,
        Command::Serve(args) => serve(args, env_key, shutdown_signal()?).await,
        Command::Account(a) => admin(&a.client, None, a.cmd.request()).await,
        Command::User(a) => {
            let request = a.cmd.request(&mut read_password_stdin)?;
            admin(&a.client, a.cmd.out(), request).await
        }
        Command::Role(a) => admin(&a.client, None, a.cmd.request()).await,
        Command::Pending(a) => admin(&a.client, None, a.cmd.request()).await,
        Command::Token(a) => admin(&a.client, None, a.cmd.request()).await,
        Command::Operator(client) => admin(&client, None, GetOperator {}).await,
        Command::Status(client) => admin(&client, None, GetStatus {}).await,
        Command::SysCreds(a) => {
            let out = OutFile::of(&a.out, a.force);
            admin(&a.client, out, SysCreds { name: Some(a.name) }).await
        }
    }
}

async fn init(args: &InitArgs, env_key: Option<String>) -> Result<InitOutcome> {
    let extras = InitExtras { tls: args.server_tls.settings(), store: args.store_request() };
    bootstrap::init_with(&args.options(env_key), &extras, model::now())
        .await
        .with_context(|| format!("init in {}", args.store.data_dir.display()))
}

/// The client URL of the server `init` configures: `tls://` when it requires TLS.
fn server_url(args: &InitArgs, tls: Option<&ServerTls>) -> String {
    let settings = args.server.settings();
    if tls.is_some() {
        settings.tls_url()
    } else {
        settings.client_url()
    }
}

/// The TLS flags of a printed command line: the CA, and for a server that verifies clients
/// a client certificate (`Some(None)`: one the reader must supply).
fn tls_hint(ca: Option<&Path>, client: Option<Option<&(PathBuf, PathBuf)>>) -> String {
    let mut hint = String::new();
    if let Some(ca) = ca {
        hint.push_str(&format!(" --tlsca {}", ca.display()));
    }
    match client {
        Some(Some((cert, key))) => {
            hint.push_str(&format!(" --tlscert {} --tlskey {}", cert.display(), key.display()))
        }
        Some(None) => hint.push_str(" --tlscert CLIENT-CERT.pem --tlskey CLIENT-KEY.pem"),
        None => {}
    }
    hint
}

fn print_init(outcome: &InitOutcome) {
    if outcome.created {
        println!("Created a new trust chain (operator {}).", outcome.operator_public_key);
    } else {
        println!(
            "Kept the existing trust chain (operator {}); files rewritten.",
            outcome.operator_public_key
        );
    }
    if let Some(path) = &outcome.created_master_key {
        println!(
            "  master key:      {} (created; back it up apart from the data dir)",
            path.display()
        );
    }
    let o = &outcome.outputs;
    println!("  store:           {}", outcome.store);
    println!("  server config:   {}", o.config.display());
    println!("  operator JWT:    {}", o.operator_jwt.display());
    println!("  admin creds:     {}", o.admin_creds.display());
    println!("  sentinel creds:  {}", o.sentinel_creds.display());
}

async fn up(args: UpArgs, env_key: Option<String>, signal: impl Future<Output = ()>) -> Result<()> {
    if let Some(servers) = args.cluster {
        return up_cluster(args, usize::from(servers), env_key, signal).await;
    }
    let bin = nats_server::find(args.nats_server.as_deref())?;
    // The service's own TLS, settled before anything is written or started.
    let server_tls = args.init.server_tls.settings();
    let ca = server_tls.as_ref().and_then(|t| t.ca_file.clone());
    let tls = args.tls.files(&|name| std::env::var(name).ok(), [ca, None, None])?;
    if server_tls.as_ref().is_some_and(|t| t.verify) && tls.client.is_none() {
        return Err(CliError::ServiceNeedsClientCert.into());
    }
    let outcome = init(&args.init, env_key).await?;
    print_init(&outcome);
    let config = &outcome.outputs.config;
    nats_server::check_config(&bin, config).await?;
    let settings = args.init.server.settings();
    let log = args.init.server.out_dir.join("nats-server.log");
    let server = nats_server::NatsServer::start(
        &bin,
        config,
        &log,
        &settings.listen_addr(),
        &[],
        Duration::from_secs(15),
    )
    .await
    .with_context(|| format!("starting {}", bin.display()))?;
    let url = server_url(&args.init, server_tls.as_ref());
    let creds = outcome.outputs.admin_creds.display();
    let hint = match &server_tls {
        Some(t) => tls_hint(tls.ca.as_deref(), t.verify.then_some(tls.client.as_ref())),
        None => tls_hint(tls.ca.as_deref(), tls.client.as_ref().map(Some)),
    };
    println!("\nnats-server is up at {url} (log: {}).", log.display());
    println!("Admins connect with {creds}:");
    println!("  nats-authd status --creds {creds} --nats-url {url}{hint}");
    println!("  nats-authd account create acme --creds {creds} --nats-url {url}{hint}");
    println!("Ctrl-C stops the service and the server.\n");

    // The service stops on a signal or when the server dies under it.
    let died = server.exited();
    let shutdown = async move {
        tokio::select! {
            () = signal => {}
            status = died => tracing::error!(%status, "nats-server exited; stopping"),
        }
    };
    let settings = app::Settings {
        connection: ConnectionSettings {
            urls: vec![url],
            tls,
            // The server answered a moment ago: a first connect that fails is a setup error
            // (a TLS file, a CA that did not sign the server's certificate) to show at once,
            // not a server to wait for.
            require_nats: true,
            ..ConnectionSettings::default()
        },
        publisher: args.publisher.settings(),
        callout: args.callout.settings(),
        store: outcome.store.clone(),
        ..app::Settings::default()
    };
    let result = app::run(outcome.authority, settings, shutdown).await;
    let server_status = server.stop(Duration::from_secs(10)).await;
    result.context("service")?;
    if let Some(status) = server_status.filter(|s| !s.is_empty()) {
        anyhow::bail!("nats-server exited on its own ({status}); see {}", log.display());
    }
    Ok(())
}

/// `up --cluster N`: N servers with routes and JetStream, then M instances as processes of
/// this binary, each on its own copy of the data dir. Runs until a signal; an instance or a
/// server that dies is reported and the rest keep running (that is what the cluster is for).
async fn up_cluster(
    args: UpArgs,
    servers: usize,
    env_key: Option<String>,
    signal: impl Future<Output = ()>,
) -> Result<()> {
    let bin = nats_server::find(args.nats_server.as_deref())?;
    if args.init.server_tls.settings().is_some() {
        anyhow::bail!(
            "--cluster does not take --server-tls-*: the local cluster is plain loopback (see \
             nats-config/cluster/ for a production cluster with TLS)"
        );
    }
    let data_dir = args.init.store.data_dir.clone();
    let store = cluster_store(&args.init, servers)?;
    let instances = usize::from(args.instances.unwrap_or(2));
    let server = &args.init.server;
    let first = (server.port != 0).then_some(FirstPorts {
        client: server.port,
        http: server.http_port,
        route: args.cluster_port,
    });
    let plan = ClusterPlan::new(&server.out_dir, &server.host, servers, first)?;
    // init's own outputs go to the first server's dir; the others get theirs below.
    let mut init_args = args.init.clone();
    init_args.server.out_dir = plan.nodes[0].out_dir.clone();
    init_args.server.server_name = plan.nodes[0].settings.server_name.clone();
    init_args.server.port = plan.nodes[0].settings.port;
    init_args.server.http_port = plan.nodes[0].settings.http_port;
    init_args.backend = Some(Backend::Jetstream);
    init_args.replicas = store;
    // The local.conf files first: init writes a jetstream-only one where there is none.
    local_cluster::write_local_confs(&plan).await?;
    let outcome = init(&init_args, env_key).await?;
    local_cluster::write_configs(&outcome.authority, &data_dir, &plan, &bin).await?;
    print_init(&outcome);
    let admin_creds = outcome.outputs.admin_creds.clone();
    // Closed before it is copied: instances run on copies, never on the original.
    drop(outcome);

    let servers = local_cluster::start_servers(&bin, &plan, Duration::from_secs(15))
        .await
        .with_context(|| format!("starting {}", bin.display()))?;
    let leader = local_cluster::await_meta_leader(&plan, Duration::from_secs(30)).await?;

    let exe = std::env::current_exe().context("finding this executable")?;
    let extra = serve_flags(&args);
    let mut running = Vec::new();
    for i in 0..instances {
        let copy = instance_data_dir(&data_dir, i + 1);
        local_cluster::refresh_copy(&data_dir, &copy).await?;
        let log = server.out_dir.join(format!("instance-{}.log", i + 1));
        let urls = plan.urls_from(i);
        let child = local_cluster::spawn_instance(&exe, &copy, &urls, &extra, &log)?;
        running.push((
            format!("instance {}", i + 1),
            child,
            log,
            plan.nodes[i % plan.nodes.len()].settings.server_name.clone(),
        ));
    }

    let urls = plan.urls().join(",");
    let creds = admin_creds.display();
    println!(
        "\nJetStream cluster {} is up: {} servers, meta leader {leader}.",
        local_cluster::CLUSTER_NAME,
        plan.nodes.len()
    );
    for (node, server) in plan.nodes.iter().zip(&servers) {
        println!(
            "  {}  {}  pid {}  log {}",
            node.settings.server_name,
            node.url(),
            server.pid().unwrap_or_default(),
            node.log_file().display()
        );
    }
    println!("Instances (nats-authd serve, each on its own copy of the data dir):");
    for (name, child, log, primary) in &running {
        println!(
            "  {name}  pid {}  primary {primary}  log {}",
            child.pid().unwrap_or_default(),
            log.display()
        );
    }
    println!("Admins connect with {creds}:");
    println!("  nats-authd status --creds {creds} --nats-url {urls}");
    println!("Try failover (README: Deployment):");
    if let Some((name, child, _, _)) = running.first() {
        println!(
            "  kill {}    # {name}: logins and changes go on through the other instances",
            child.pid().unwrap_or_default()
        );
    }
    if let Some(server) = servers.first() {
        println!(
            "  kill {}    # {}: clients and instances move to the other servers",
            server.pid().unwrap_or_default(),
            plan.nodes[0].settings.server_name
        );
    }
    println!("  kill two of three servers: JetStream loses quorum and the store stops answering");
    println!("Ctrl-C stops every instance and server.\n");

    // Every child's exit, labelled, until the signal.
    let mut exits: FuturesUnordered<BoxFuture<'static, (String, String)>> = FuturesUnordered::new();
    for (name, child, log, _) in &running {
        let (name, log, exited) = (name.clone(), log.clone(), child.exited());
        exits.push(Box::pin(
            async move { (format!("{name} (log {})", log.display()), exited.await) },
        ));
    }
    for (node, server) in plan.nodes.iter().zip(&servers) {
        let name = format!(
            "nats-server {} (log {})",
            node.settings.server_name,
            node.log_file().display()
        );
        let exited = server.exited();
        exits.push(Box::pin(async move { (name, exited.await) }));
    }
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            Some((name, status)) = exits.next(), if !exits.is_empty() => {
                eprintln!("nats-authd up: {name} exited ({status}); the others keep running");
            }
        }
    }
    drop(exits);
    println!("Stopping {} instances, then {} servers...", running.len(), servers.len());
    let grace = Duration::from_secs(10);
    futures::future::join_all(running.into_iter().map(|(_, child, _, _)| child.stop(grace))).await;
    futures::future::join_all(servers.into_iter().map(|s| s.stop(grace))).await;
    Ok(())
}

/// The replicas to ask `init` for with `--cluster N`: for a new data dir, `--replicas` or
/// min(N, 3); for an existing JetStream one, what it has (checked to fit N servers).
fn cluster_store(init: &InitArgs, servers: usize) -> Result<Option<u8>> {
    let data_dir = &init.store.data_dir;
    if init.backend == Some(Backend::Sled) {
        anyhow::bail!("--cluster runs on the JetStream store; leave out --store sled");
    }
    let have_store =
        bootstrap::store_dir(data_dir).read_dir().is_ok_and(|mut d| d.next().is_some());
    let choice = bootstrap::store_choice(data_dir)?;
    if have_store && !choice.is_jetstream() {
        anyhow::bail!(
            "{} runs on the single-node sled store, and --cluster needs a JetStream one (a \
             deployment's store is chosen once, at its first init). Give the cluster its own \
             dirs, e.g. `up --cluster 3 --data-dir authd-cluster/data --out-dir authd-cluster`",
            data_dir.display()
        );
    }
    let replicas = if have_store {
        choice.replicas
    } else {
        init.replicas.map_or(servers.min(3), usize::from)
    };
    if replicas > servers {
        anyhow::bail!(
            "the store of {} keeps {replicas} replicas, more than the {servers} servers of \
             --cluster {servers}",
            data_dir.display()
        );
    }
    // On an existing data dir, only what was asked for: init refuses a --replicas that
    // disagrees with the data dir's.
    Ok(if have_store { init.replicas } else { Some(replicas as u8) })
}

/// Where instance `i` (from 1) of `up --cluster` keeps its copy of the data dir: `DATA_DIR-i`.
fn instance_data_dir(data_dir: &Path, i: usize) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{i}"));
    data_dir.with_file_name(name)
}

/// The `serve` flags an instance of `up --cluster` inherits from `up`'s own.
fn serve_flags(args: &UpArgs) -> Vec<String> {
    let (p, c) = (&args.publisher, &args.callout);
    let mut flags = vec![
        format!("--push-max-attempts={}", p.push_max_attempts),
        format!("--push-retention={}", p.push_retention),
        format!("--callout-jwt-ttl={}", c.callout_jwt_ttl),
        format!("--callout-cache-ttl={}", c.callout_cache_ttl),
        format!("--login-failures-per-user={}", c.login_failures_per_user),
        format!("--login-failures-per-host={}", c.login_failures_per_host),
        format!("--login-failure-window={}", c.login_failure_window),
    ];
    if let Some(file) = &args.init.store.master_key_file {
        // Absolute: the instance may resolve it from another dir one day; today from ours.
        let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
        flags.push(format!("--master-key-file={}", file.display()));
    }
    flags
}

async fn serve(
    args: ServeArgs,
    env_key: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut settings = args.settings(&|name| std::env::var(name).ok())?;
    let data_dir = &args.store.data_dir;
    let authority = bootstrap::open(data_dir, &args.store.master_key(env_key))
        .await
        .with_context(|| format!("opening {}", data_dir.display()))?;
    settings.store = bootstrap::store_choice(data_dir)
        .with_context(|| format!("opening {}", data_dir.display()))?;
    tracing::info!(store = %settings.store, "starting");
    app::run(authority, settings, shutdown).await?;
    Ok(())
}

/// Sends a command's typed request as an admin and prints the answer; a creds answer goes to
/// `out` if given.
async fn admin(args: &ClientArgs, out: Option<OutFile>, request: impl Dispatch) -> Result<()> {
    if let Some(out) = out.as_ref().filter(|out| !out.replace && out.path.exists()) {
        // Before the request: a regenerate must not revoke the old key and then have nowhere
        // to put the new one.
        return Err(out_exists(&out.path));
    }
    let timeout = Duration::try_from_secs_f64(args.timeout).context("--timeout")?;
    let spec = args.connect_spec(&|name| std::env::var(name).ok())?;
    let api = spec.connect(API_PREFIX, timeout).await?;
    request.dispatch(&mut Admin { api, json: args.json, out }).await
}

/// The CLI's sender: one admin connection, and how to show answers.
struct Admin {
    api: AdminClient,
    /// `--json`: print the answer as JSON, creds included.
    json: bool,
    out: Option<OutFile>,
}

impl Sender for Admin {
    type Error = anyhow::Error;

    async fn send<R>(&mut self, request: R) -> Result<()>
    where
        R: ApiRequest,
        R::Reply: serde::Serialize,
    {
        let reply = match self.api.send(&request).await {
            Ok(reply) => reply,
            // The service speaks of its JSON field; here it is a flag.
            // `in_use` is the wire kind, a stable word of the API.
            Err(e @ ClientError::Service { .. })
                if R::ENDPOINT == nats_authd::api::Endpoint::AccountDelete
                    && matches!(&e, ClientError::Service { kind, .. } if kind == "in_use") =>
            {
                return Err(
                    Hinted(e, "pass --cascade to delete its users and roles with it").into()
                );
            }
            Err(e) => return Err(e.into()),
        };
        wait_for_push(&self.api, &request).await;
        let mut answer = serde_json::to_value(&reply).context("showing the answer")?;
        let endpoint = R::ENDPOINT.subject();
        if endpoint.ends_with(".list") {
            // Lists come in pages: show them all.
            let request = serde_json::to_value(&request).context("sending the request")?;
            answer = self.api.rest_of_pages(endpoint, request, answer).await?;
        }
        if let Some(creds) = answer.get("creds").and_then(|c| c.as_str()).filter(|_| !self.json) {
            return match &self.out {
                Some(out) => write_creds(out, creds),
                None => Ok(write!(std::io::stdout(), "{creds}")?),
            };
        }
        // writeln!, not println!: a closed stdout is an error to handle (quietly), not a panic.
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", serde_json::to_string_pretty(&answer)?)?;
        } else {
            writeln!(stdout, "{}", output::render(R::ENDPOINT.subject(), &answer))?;
        }
        stdout.flush()?;
        Ok(())
    }
}

/// Writes creds to `out`, private to the user, refusing an existing file unless asked.
fn write_creds(out: &OutFile, creds: &str) -> Result<()> {
    let existing = if out.replace { Existing::Replace } else { Existing::Refuse };
    match vault::write_private(&out.path, creds.as_bytes(), existing) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(out_exists(&out.path))
        }
        Err(e) => return Err(e).with_context(|| format!("writing {}", out.path.display())),
    }
    writeln!(std::io::stdout(), "creds written to {}", out.path.display())?;
    Ok(())
}

/// After a change whose account JWT is pushed to the servers (the API table says which:
/// [`ApiRequest::pushed_account`]), waits briefly until the servers have it, so that what the
/// user does next (connect with new creds) works. Says so if it is still queued; never fails
/// the command, which has been applied.
async fn wait_for_push<R: ApiRequest>(api: &AdminClient, request: &R) {
    let Some(account) = request.pushed_account() else { return };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let Ok(pending) = api.list_all(&ListPending::default()).await else { return };
        match pending.iter().find(|p| &p.account == account).map(|p| &p.state) {
            None => return,
            Some(PendingState::Failed { reason, .. }) => {
                eprintln!("warning: pushing account {account} to the servers failed: {reason}");
                return;
            }
            Some(PendingState::Pending) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    eprintln!(
        "note: account {account} is still queued for the servers (see `nats-authd pending list`)"
    );
}

fn out_exists(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} already exists; pass --force to replace it (or choose another --out)",
        path.display()
    )
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled, so a signal during start-up is not fatal: it is
/// remembered and ends the service as soon as it runs.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested");
    })
}
