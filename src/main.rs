//! The `nats-authd` binary: parses the command line, sets up logging, calls the library.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use nats_authd::bootstrap::{self, InitOutcome};
use nats_authd::cli::{
    Cli, ClientArgs, Command, InitArgs, ServeArgs, UpArgs, DEFAULT_LOG, MASTER_KEY_ENV,
};
use nats_authd::connection::ConnectionSettings;
use nats_authd::{app, claims, model, nats_server};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!("nats-authd: ignoring log filter {:?}: {e}", cli.log);
        tracing_subscriber::EnvFilter::new(DEFAULT_LOG)
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = run(cli.command).await {
        eprintln!("nats-authd: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> Result<()> {
    let shutdown = shutdown_signal()?;
    let env_key = std::env::var(MASTER_KEY_ENV).ok();
    match command {
        Command::Init(args) => {
            let outcome = init(&args, env_key).await?;
            print_init(&outcome);
            println!(
                "\nStart nats-server:  nats-server -c {}",
                outcome.outputs.config.display()
            );
            println!(
                "Then the service:   nats-authd serve --data-dir {}",
                args.store.data_dir.display()
            );
            println!("Or both at once:    nats-authd up");
            Ok(())
        }
        Command::Up(args) => up(args, env_key, shutdown).await,
        Command::Serve(args) => serve(args, env_key, shutdown).await,
        Command::Status(args) => status(args).await,
    }
}

async fn init(args: &InitArgs, env_key: Option<String>) -> Result<InitOutcome> {
    bootstrap::init(&args.options(env_key), model::now())
        .await
        .with_context(|| format!("init in {}", args.store.data_dir.display()))
}

fn print_init(outcome: &InitOutcome) {
    if outcome.created {
        println!(
            "Created a new trust chain (operator {}).",
            outcome.operator_public_key
        );
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
    println!("  server config:   {}", o.config.display());
    println!("  operator JWT:    {}", o.operator_jwt.display());
    println!("  admin creds:     {}", o.admin_creds.display());
    println!("  sentinel creds:  {}", o.sentinel_creds.display());
}

async fn up(
    args: UpArgs,
    env_key: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let bin = nats_server::find(args.nats_server.as_deref())?;
    let outcome = init(&args.init, env_key).await?;
    print_init(&outcome);
    let config = &outcome.outputs.config;
    nats_server::check_config(&bin, config).await?;
    let settings = args.init.server.settings();
    let log = args.init.server.out_dir.join("nats-server.log");
    let addr = format!("{}:{}", settings.host, settings.port);
    let server =
        nats_server::NatsServer::start(&bin, config, &log, &addr, &[], Duration::from_secs(15))
            .await
            .with_context(|| format!("starting {}", bin.display()))?;
    let url = settings.client_url();
    println!("\nnats-server is up at {url} (log: {}).", log.display());
    println!(
        "Admins connect with {}:",
        outcome.outputs.admin_creds.display()
    );
    println!(
        "  nats-authd status --creds {} --nats-url {url}",
        outcome.outputs.admin_creds.display()
    );
    println!("Ctrl-C stops the service and the server.\n");

    let connection = ConnectionSettings {
        urls: vec![url],
        ..ConnectionSettings::default()
    };
    let result = app::run(outcome.authority, connection, shutdown).await;
    server.stop(Duration::from_secs(10)).await;
    result.context("service")
}

async fn serve(
    args: ServeArgs,
    env_key: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let authority = bootstrap::open(&args.store.data_dir, &args.store.master_key(env_key))
        .await
        .with_context(|| format!("opening {}", args.store.data_dir.display()))?;
    app::run(authority, args.connection(), shutdown).await?;
    Ok(())
}

async fn status(args: ClientArgs) -> Result<()> {
    let client = connect_with_creds(&args.creds, &args.nats_url).await?;
    let reply = client
        .request("authd.status", "".into())
        .await
        .with_context(|| format!("asking {} for authd.status", args.nats_url))?;
    let value: serde_json::Value =
        serde_json::from_slice(&reply.payload).context("status reply is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn connect_with_creds(creds: &Path, url: &str) -> Result<async_nats::Client> {
    let text = std::fs::read_to_string(creds)
        .with_context(|| format!("reading creds {}", creds.display()))?;
    claims::creds::parse(&text).with_context(|| format!("reading creds {}", creds.display()))?;
    async_nats::ConnectOptions::with_credentials(&text)
        .context("creds")?
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled, so a signal during start-up is not fatal: it is
/// remembered and ends the service as soon as it runs.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
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
