//! Scale run: many users in many accounts, created through the real management API, then what
//! that size costs the service: create rate, password logins by bare name and by
//! `name@account`, resident memory (also after 15 s idle), disk, start-up time, `user.get`
//! latency and paged `user.list`. Prints a table; asserts nothing.
//!
//! The service runs as a child process of the release binary (`nats-authd serve`), so the
//! memory reported is the service's alone, not this client's; nats-server is started here too,
//! on free loopback ports, everything in a temp dir.
//!
//! ```sh
//! scripts/ensure-nats-server      # once; or set NATS_SERVER_BIN
//! cargo build --release --bin nats-authd --example scale
//! target/release/examples/scale --users 100000 --accounts 1000
//! ```
//!
//! Flags (defaults): `--users 10000 --accounts 100 --big USERS/10 --passwords 100 --tokens
//! 100 --inflight 64 --gets 2000 --bin <next to this example>/nats-authd`; `--keep DIR` works
//! in DIR (which must not exist) and leaves the stack's files there, for a closer look.
//!
//! What is created: `--accounts` tenants (`t0000` …). Account `t0000` gets `--big` users, the
//! rest are spread evenly over the others. Users have no role; `--passwords` of them (spread
//! evenly) get a password (argon2id, as in production), `--tokens` others get one API token
//! each; the rest are creds-only users (an nkey each, seed sealed, like every user).
//!
//! Bounded: every request has the client's 10 s time-out (retried once inside it with the same
//! request id), at most `--inflight` requests are outstanding, every wait for the service has
//! a deadline. Each figure is printed with the 1-minute load average when it was taken.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_nats::ConnectOptions;
use futures::StreamExt;
use nats_authd::client::AdminClient;
use nats_authd::names::API_PREFIX;
use nats_authd::nats_server::{self, NatsServer};
use nats_authd::service::Status;
use rand::Rng;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// A request's time-out: long, since 64 in flight queue behind each other's fsyncs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the service may take to answer `status` after its start.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How long the service may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(60);
const PASSWORD: &str = "scale-password-1";

struct Args {
    users: usize,
    accounts: usize,
    big: Option<usize>,
    passwords: usize,
    tokens: usize,
    inflight: usize,
    gets: usize,
    bin: Option<PathBuf>,
    keep: Option<PathBuf>,
}

const USAGE: &str = "\
usage: scale [--users N] [--accounts N] [--big N] [--passwords N] [--tokens N] [--inflight N]
             [--gets N] [--bin PATH] [--keep DIR]

Creates users through the management API of a throw-away stack on loopback and prints what
that size costs. Defaults: --users 10000 --accounts 100 --big USERS/10 --passwords 100
--tokens 100 --inflight 64 --gets 2000 --bin <next to this example>/nats-authd.";

fn args() -> Result<Args> {
    let mut a = Args {
        users: 10_000,
        accounts: 100,
        big: None,
        passwords: 100,
        tokens: 100,
        inflight: 64,
        gets: 2000,
        bin: None,
        keep: None,
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
            "--users" => a.users = n()?,
            "--accounts" => a.accounts = n()?.max(1),
            "--big" => a.big = Some(n()?),
            "--passwords" => a.passwords = n()?,
            "--tokens" => a.tokens = n()?,
            "--inflight" => a.inflight = n()?.max(1),
            "--gets" => a.gets = n()?.max(1),
            "--bin" => a.bin = Some(PathBuf::from(value)),
            "--keep" => a.keep = Some(PathBuf::from(value)),
            other => return Err(anyhow!("unknown flag {other}")),
        }
    }
    if 2 * (a.passwords + a.tokens) > a.users {
        bail!("--passwords + --tokens may be at most half of --users");
    }
    Ok(a)
}

/// Which account user `i` goes to, and what it gets.
struct Plan {
    users: usize,
    accounts: usize,
    big: usize,
    password_stride: Option<usize>,
    token_stride: Option<usize>,
}

#[derive(PartialEq)]
enum Secret {
    None,
    Password,
    Token,
}

impl Plan {
    fn new(a: &Args) -> Plan {
        let big = if a.accounts == 1 { a.users } else { a.big.unwrap_or(a.users / 10) };
        let stride = |k: usize| (k > 0).then(|| (a.users / k).max(1));
        Plan {
            users: a.users,
            accounts: a.accounts,
            big: big.min(a.users),
            password_stride: stride(a.passwords),
            token_stride: stride(a.tokens),
        }
    }

    fn account_name(k: usize) -> String {
        format!("t{k:04}")
    }

    fn user_name(i: usize) -> String {
        format!("u{i:06}")
    }

    fn account_of(&self, i: usize) -> usize {
        if i < self.big || self.accounts == 1 {
            0
        } else {
            1 + (i - self.big) % (self.accounts - 1)
        }
    }

    /// Passwords on users 0, stride, 2·stride …; tokens half a stride later, where no
    /// password is.
    fn secret_of(&self, i: usize) -> Secret {
        if self.password_stride.is_some_and(|s| i.is_multiple_of(s)) {
            Secret::Password
        } else if self.token_stride.is_some_and(|s| i % s == s / 2) {
            Secret::Token
        } else {
            Secret::None
        }
    }

    /// How many users get a password and how many a token.
    fn secrets(&self) -> (usize, usize) {
        (0..self.users).fold((0, 0), |(p, t), i| match self.secret_of(i) {
            Secret::Password => (p + 1, t),
            Secret::Token => (p, t + 1),
            Secret::None => (p, t),
        })
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The 1-minute load average: other builds share this machine.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status.lines().find(|l| l.starts_with(name)).context(name.to_string())?;
        let kb: f64 = line.split_whitespace().nth(1).context("value")?.parse()?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Bytes of all files under `dir`: (apparent size, allocated on disk).
fn disk(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let (mut len, mut blocks) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (l, b) = disk(&entry.path())?;
            len += l;
            blocks += b;
        } else {
            len += meta.len();
            blocks += meta.blocks() * 512;
        }
    }
    Ok((len, blocks))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

fn p50_p99(mut t: Vec<Duration>) -> String {
    t.sort();
    format!(
        "{} / {} (max {})",
        ms(percentile(&t, 0.5)),
        ms(percentile(&t, 0.99)),
        ms(t.last().copied().unwrap_or_default())
    )
}

/// One line of the result table, printed as it is measured (a long run shows progress).
struct Table(Vec<(String, String, String)>);

impl Table {
    fn row(&mut self, what: impl Into<String>, result: impl Into<String>) {
        let (what, result, load) = (what.into(), result.into(), load());
        eprintln!("  {what}: {result} (load {load})");
        self.0.push((what, result, load));
    }
}

/// `nats-authd serve` as a child process, its log in a file.
struct Service {
    child: Child,
    pid: u32,
}

impl Service {
    fn start(bin: &Path, data_dir: &Path, url: &str, log: &Path) -> Result<Service> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut command = Command::new(bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("NATS_AUTHD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--nats-url")
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the service exited at once")?;
        Ok(Service { child, pid })
    }

    /// SIGTERM, then wait for a clean exit: how long the service's shutdown took.
    async fn stop(mut self) -> Result<Duration> {
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = tokio::time::timeout(STOP_DEADLINE, self.child.wait())
            .await
            .context("the service did not stop after SIGTERM")??;
        anyhow::ensure!(status.success(), "the service exited with {status}");
        Ok(t.elapsed())
    }
}

/// Polls `status` until it answers: the service is serving.
async fn wait_status(admin: &AdminClient, service: &mut Service) -> Result<Duration> {
    let t = Instant::now();
    let probe = AdminClient::new(admin.nats().clone(), API_PREFIX, Duration::from_millis(500));
    loop {
        if probe.call("status", &json!({})).await.is_ok() {
            return Ok(t.elapsed());
        }
        if let Some(exit) = service.child.try_wait()? {
            bail!("the service exited with {exit} before answering");
        }
        anyhow::ensure!(t.elapsed() < START_DEADLINE, "the service never answered status");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn status(admin: &AdminClient) -> Result<(Status, Duration)> {
    let t = Instant::now();
    let value = admin.call("status", &json!({})).await?;
    Ok((serde_json::from_value(value)?, t.elapsed()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        // target/release/examples/scale -> target/release/nats-authd
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("where this example lives")?
            .join("nats-authd"),
    };
    anyhow::ensure!(
        bin.exists(),
        "{} not found: cargo build --release --bin nats-authd (or --bin PATH)",
        bin.display()
    );
    let plan = Plan::new(&args);
    let mut table = Table(Vec::new());
    let result = run(&args, &plan, &bin, &mut table).await;

    let (passwords, tokens) = plan.secrets();
    println!(
        "\n## Scale: {} users in {} accounts ({} in the big account; {passwords} with a \
         password, {tokens} with a token; {} in flight)\n",
        args.users, args.accounts, plan.big, args.inflight
    );
    println!("| what | result | load avg |\n|---|---:|---:|");
    for (what, result, load) in &table.0 {
        println!("| {what} | {result} | {load} |");
    }
    result
}

async fn run(args: &Args, plan: &Plan, bin: &Path, table: &mut Table) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = match &args.keep {
        Some(keep) => {
            std::fs::create_dir(keep).with_context(|| format!("--keep {}", keep.display()))?;
            keep.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let data_dir = dir.join("data");
    let out_dir = dir.join("out");
    let (port, http_port) = (free_port()?, free_port()?);
    let init = Command::new(bin)
        .arg("init")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--out-dir")
        .arg(&out_dir)
        .args(["--port", &port.to_string(), "--http-port", &http_port.to_string()])
        .args(["--server-name", "scale", "--operator-name", "scale"])
        .env_remove("NATS_AUTHD_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .await?;
    anyhow::ensure!(
        init.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools");
    let server_bin = nats_server::find_in_tools(&tools)?;
    let addr = format!("127.0.0.1:{port}");
    let url = format!("nats://{addr}");
    let server = NatsServer::start(
        &server_bin,
        &out_dir.join("nats-server.conf"),
        &dir.join("nats.log"),
        &addr,
        &[],
        Duration::from_secs(15),
    )
    .await?;
    let log = dir.join("service.log");
    let outcome = measure(args, plan, bin, &data_dir, &out_dir, &url, &log, table).await;
    if outcome.is_err() {
        if let Ok(text) = std::fs::read_to_string(&log) {
            let tail: Vec<_> = text.lines().rev().take(20).collect();
            eprintln!("service log, last lines:");
            for line in tail.into_iter().rev() {
                eprintln!("  {line}");
            }
        }
    }
    server.stop(Duration::from_secs(5)).await;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    plan: &Plan,
    bin: &Path,
    data_dir: &Path,
    out_dir: &Path,
    url: &str,
    log: &Path,
    table: &mut Table,
) -> Result<()> {
    let mut service = Service::start(bin, data_dir, url, log)?;
    let admin_creds = std::fs::read_to_string(out_dir.join("admin.creds"))?;
    let nats = ConnectOptions::with_credentials(&admin_creds)?.connect(url).await?;
    let admin = AdminClient::new(nats, API_PREFIX, REQUEST_TIMEOUT);
    let first_start = wait_status(&admin, &mut service).await?;
    let (rss, _) = memory(service.pid)?;
    table.row("start-up, empty store (spawn → status answers)", ms(first_start));
    table.row("service RSS, empty", format!("{rss:.1} MiB"));

    // Accounts: each create waits for its push (up to 3 s), so a few at a time.
    let t = Instant::now();
    let failed = AtomicUsize::new(0);
    futures::stream::iter(0..plan.accounts)
        .map(|k| {
            let (admin, failed) = (&admin, &failed);
            async move {
                let body = json!({ "name": Plan::account_name(k) });
                if let Err(e) = admin.call("account.create", &body).await {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("account.create {k}: {e}");
                    }
                }
            }
        })
        .buffer_unordered(args.inflight.min(16))
        .collect::<Vec<()>>()
        .await;
    anyhow::ensure!(failed.load(Ordering::Relaxed) == 0, "account creates failed");
    let took = t.elapsed();
    table.row(
        format!("create {} accounts", plan.accounts),
        format!("{:.1} s ({:.0}/s)", took.as_secs_f64(), plan.accounts as f64 / took.as_secs_f64()),
    );

    // Users, `inflight` at a time.
    let start = Instant::now();
    let done = AtomicUsize::new(0);
    let latencies = futures::stream::iter(0..plan.users)
        .map(|i| {
            let (admin, failed, done) = (&admin, &failed, &done);
            async move {
                let (account, name) = (Plan::account_name(plan.account_of(i)), Plan::user_name(i));
                let secret = plan.secret_of(i);
                let mut body = json!({ "account": account, "name": name });
                if secret == Secret::Password {
                    body["password"] = json!(PASSWORD);
                }
                let t = Instant::now();
                let mut result = admin.call("user.create", &body).await;
                let took = t.elapsed();
                if result.is_ok() && secret == Secret::Token {
                    let body = json!({ "account": account, "user": name, "description": "scale" });
                    result = admin.call("token.create", &body).await;
                }
                if let Err(e) = result {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("user {account}/{name}: {e}");
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of((plan.users / 10).max(1)) {
                    eprintln!("  … {n} users, {:.0} s", start.elapsed().as_secs_f64());
                }
                took
            }
        })
        .buffer_unordered(args.inflight)
        .collect::<Vec<Duration>>()
        .await;
    let failures = failed.load(Ordering::Relaxed);
    anyhow::ensure!(failures == 0, "{failures} user creates failed");
    let took = start.elapsed();
    table.row(
        format!("create {} users ({} in flight)", plan.users, args.inflight),
        format!(
            "{:.1} s ({:.0} users/s)",
            took.as_secs_f64(),
            plan.users as f64 / took.as_secs_f64()
        ),
    );
    table.row("user.create latency p50 / p99, under that load", p50_p99(latencies));
    let (rss, hwm) = memory(service.pid)?;
    table.row(
        "service RSS after the creates (peak during them)",
        format!("{rss:.1} MiB (peak {hwm:.1} MiB)"),
    );

    logins(url, plan, table).await?;
    table.row("service RSS after the creates and logins, 15 s idle", settled(service.pid).await?);

    let (s, took) = status(&admin).await?;
    anyhow::ensure!(s.users >= plan.users, "status counts {} users", s.users);
    table.row(format!("status ({} users, {} accounts counted)", s.users, s.accounts), ms(took));
    table.row("service RSS after status, 15 s idle", settled(service.pid).await?);

    let mut rng = rand::thread_rng();
    let mut gets = |admin: &AdminClient, n: usize| {
        let picks: Vec<usize> = (0..n).map(|_| rng.gen_range(0..plan.users)).collect();
        let admin = admin.clone();
        async move {
            let mut times = Vec::with_capacity(n);
            for i in picks {
                let body = json!({ "account": Plan::account_name(plan.account_of(i)), "name": Plan::user_name(i) });
                let t = Instant::now();
                admin.call("user.get", &body).await?;
                times.push(t.elapsed());
            }
            anyhow::Ok(times)
        }
    };
    let times = gets(&admin, args.gets).await?;
    table.row(
        format!("user.get p50 / p99, {} random users, one at a time", args.gets),
        p50_p99(times),
    );
    list_pages(&admin, plan, table).await?;
    let (rss, hwm) = memory(service.pid)?;
    table.row(
        "service RSS after gets and lists (peak so far)",
        format!("{rss:.1} MiB (peak {hwm:.1} MiB)"),
    );
    table.row("service RSS after gets and lists, 15 s idle", settled(service.pid).await?);
    let (len, blocks) = disk(data_dir)?;
    table.row(
        "data dir on disk, serving (apparent / allocated)",
        format!("{} / {}", mib(len), mib(blocks)),
    );

    // Restart at this size.
    let stopped = service.stop().await?;
    table.row("shutdown (SIGTERM → exit 0)", ms(stopped));
    let (len, blocks) = disk(data_dir)?;
    table.row(
        "data dir on disk, stopped (apparent / allocated)",
        format!("{} / {}", mib(len), mib(blocks)),
    );
    let mut service = Service::start(bin, data_dir, url, log)?;
    let started = wait_status(&admin, &mut service).await?;
    table.row("start-up at this size (spawn → status answers)", ms(started));
    let (rss, _) = memory(service.pid)?;
    table.row("service RSS right after start-up", format!("{rss:.1} MiB"));
    let times = gets(&admin, args.gets).await?;
    table.row(
        format!("user.get p50 / p99 after the restart ({} random users)", args.gets),
        p50_p99(times),
    );
    list_pages(&admin, plan, table).await?;
    let (s, took) = status(&admin).await?;
    table
        .row(format!("status after the restart (reconciliations {})", s.reconciliations), ms(took));
    let (rss, hwm) = memory(service.pid)?;
    table.row(
        "service RSS after gets and lists (peak since start-up)",
        format!("{rss:.1} MiB (peak {hwm:.1} MiB)"),
    );
    table.row(
        "service RSS after the restart, gets and lists, 15 s idle",
        settled(service.pid).await?,
    );
    service.stop().await?;
    Ok(())
}

/// RSS once the service has been idle a while: the argon2 workers free their blocks after
/// `password::IDLE_RELEASE` without a hash (the start-up's decoy hash is one), and the
/// allocator returns freed pages over its decay time.
async fn settled(pid: u32) -> Result<String> {
    tokio::time::sleep(nats_authd::password::IDLE_RELEASE + Duration::from_secs(5)).await;
    let (rss, _) = memory(pid)?;
    Ok(format!("{rss:.1} MiB"))
}

/// Password logins through the callout at this size, one at a time: the first of each user
/// (argon2), then again (the verified-password cache) by bare name and by `name@account`.
async fn logins(url: &str, plan: &Plan, table: &mut Table) -> Result<()> {
    let users: Vec<usize> =
        (0..plan.users).filter(|&i| plan.secret_of(i) == Secret::Password).take(20).collect();
    if users.is_empty() {
        return Ok(());
    }
    let login = |name: String| async move {
        let t = Instant::now();
        let client = tokio::time::timeout(
            REQUEST_TIMEOUT,
            ConnectOptions::with_user_and_password(name.clone(), PASSWORD.into())
                .max_reconnects(Some(1))
                .connect(url),
        )
        .await
        .with_context(|| format!("login {name} timed out"))?
        .with_context(|| format!("login {name}"))?;
        client.flush().await?;
        let took = t.elapsed();
        drop(client.drain().await);
        anyhow::Ok(took)
    };
    let with_account =
        |i: usize| format!("{}@{}", Plan::user_name(i), Plan::account_name(plan.account_of(i)));
    let (mut first, mut bare, mut qualified) = (Vec::new(), Vec::new(), Vec::new());
    for &i in &users {
        first.push(login(with_account(i)).await?);
    }
    for _ in 0..5 {
        for &i in &users {
            bare.push(login(Plan::user_name(i)).await?);
            qualified.push(login(with_account(i)).await?);
        }
    }
    let n = users.len();
    table.row(format!("password login, first ({n} users: argon2)"), p50_p99(first));
    table.row(format!("password login again, bare name ({n} users × 5)"), p50_p99(bare));
    table.row(format!("password login again, name@account ({n} users × 5)"), p50_p99(qualified));
    Ok(())
}

/// Every page of the big account's users, and of all accounts, at the default page size.
async fn list_pages(admin: &AdminClient, plan: &Plan, table: &mut Table) -> Result<()> {
    let account = Plan::account_name(0);
    let (times, items) = pages(admin, "user.list", json!({ "account": account })).await?;
    anyhow::ensure!(items == plan.big, "listed {items} users of {account}, created {}", plan.big);
    let total: Duration = times.iter().sum();
    let pages_n = times.len();
    table.row(
        format!("user.list of {account} ({items} users), every page"),
        format!("{pages_n} pages in {}; a page {}", ms(total), p50_p99(times)),
    );
    let (times, items) = pages(admin, "account.list", json!({})).await?;
    let total: Duration = times.iter().sum();
    table.row(
        format!("account.list ({items} accounts), every page"),
        format!("{} pages in {}", times.len(), ms(total)),
    );
    Ok(())
}

/// Follows `next` to the end; the time of each page and the items seen.
async fn pages(admin: &AdminClient, endpoint: &str, body: Value) -> Result<(Vec<Duration>, usize)> {
    let mut times = Vec::new();
    let mut items = 0;
    let mut body = body;
    // Bounded: 1,000 pages of 500 is five times the largest run.
    for _ in 0..1000 {
        let t = Instant::now();
        let page = admin.call(endpoint, &body).await?;
        times.push(t.elapsed());
        items += page["items"].as_array().context("items")?.len();
        match page.get("next").and_then(Value::as_str) {
            Some(next) => body["cursor"] = json!(next),
            None => return Ok((times, items)),
        }
    }
    bail!("{endpoint}: more than 1000 pages")
}
