//! Test harness: a fresh `init` in a temp dir and a real nats-server on free loopback ports.
//!
//! Each test gets its own stack, so tests run in parallel. The server is killed when the
//! [`Stack`] is dropped, panics included (the child is `kill_on_drop`).

#![allow(dead_code)]

pub mod certs;
pub mod multi;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, Event, ServerError};
use nats_authd::api::account::{AccountView, CreateAccount};
use nats_authd::api::ops::{GetStatus, ListPending};
use nats_authd::api::role::{CreateRole, PermissionInput, RoleView};
use nats_authd::api::user::{CreateUser, GetCreds, Password, UserRef, UserView};
use nats_authd::app::{self, AppError};
use nats_authd::authority::Authority;
use nats_authd::bootstrap::{self, InitOptions, Layout, MasterKeyOptions};
use nats_authd::client::AdminClient;
use nats_authd::connection::{self, ConnectionSettings};
use nats_authd::manage::Manager;
use nats_authd::model::{self, AccountName, RoleName, UserName};
use nats_authd::names::API_PREFIX;
use nats_authd::nats_server::{self, NatsServer};
use nats_authd::password::PasswordHasher;
use nats_authd::publisher::PublisherSettings;
use nats_authd::server_config::ServerSettings;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The nats-server binary: `NATS_SERVER_BIN`, then the project's `.tools/`, then `PATH`.
pub fn nats_server_bin() -> PathBuf {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools");
    nats_server::find_in_tools(&tools).expect(
        "nats-server not found: run `scripts/test` (installs it into .tools/) or set NATS_SERVER_BIN",
    )
}

/// A loopback port nobody listens on right now, below the kernel's ephemeral range.
///
/// A port from `bind(0)` is an ephemeral one, which the kernel may hand to any outgoing
/// connection (the tests open thousands) between this check and the server binding it: the
/// server then fails with "address in use". Below the range only a listener can take it, and
/// the counter keeps the tests of this process apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    const LOWEST: u32 = 10_000;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|low| *low > LOWEST + 1_000)
        .unwrap_or(32_768);
    let span = below - LOWEST;
    let start = *START.get_or_init(|| rand::random::<u32>() % span);
    for _ in 0..span {
        let port = (LOWEST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A data dir, its outputs, and (while running) a nats-server using them.
pub struct Stack {
    pub dir: TempDir,
    pub layout: Layout,
    pub settings: ServerSettings,
    pub authority: Option<Authority>,
    pub server: Option<NatsServer>,
}

impl Stack {
    /// `init` in a fresh temp dir, with free ports; no server yet.
    pub async fn init() -> Stack {
        Stack::init_with(true).await
    }

    /// `init` with callout sealing (xkey) on or off.
    pub async fn init_with(xkey: bool) -> Stack {
        // RUST_LOG=nats_authd=debug cargo test -- --nocapture shows the service's log.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout { data_dir: dir.path().join("data"), out_dir: dir.path().join("out") };
        let settings = ServerSettings {
            host: "127.0.0.1".into(),
            port: free_port(),
            http_port: free_port(),
            server_name: "authd-test".into(),
        };
        let options = InitOptions {
            layout: layout.clone(),
            master_key: MasterKeyOptions::default(),
            server: settings.clone(),
            operator_name: "test-operator".into(),
            xkey,
        };
        let outcome = bootstrap::init(&options, model::now()).await.unwrap();
        Stack { dir, layout, settings, authority: Some(outcome.authority), server: None }
    }

    /// Runs `init` again on this stack's dirs, as an operator re-running `init` or `up` would
    /// (the store is released first and opened again by the new run).
    pub async fn reinit(&mut self) -> Result<(), bootstrap::BootstrapError> {
        self.authority = None;
        let options = InitOptions {
            layout: self.layout.clone(),
            master_key: MasterKeyOptions::default(),
            server: self.settings.clone(),
            operator_name: "test-operator".into(),
            xkey: true,
        };
        self.authority = Some(bootstrap::init(&options, model::now()).await?.authority);
        Ok(())
    }

    /// `init` and a running server.
    pub async fn start() -> Stack {
        let mut stack = Stack::init().await;
        stack.start_server().await;
        stack
    }

    /// Starts nats-server with the generated config (again, after `stop_server`).
    pub async fn start_server(&mut self) {
        let log = self.dir.path().join("nats-server.log");
        let server = NatsServer::start(
            &nats_server_bin(),
            &self.layout.config_file(),
            &log,
            &self.addr(),
            &[],
            Duration::from_secs(15),
        )
        .await
        .unwrap();
        self.server = Some(server);
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    /// Client URL of the server.
    pub fn url(&self) -> String {
        self.settings.client_url()
    }

    /// The authority (store + master key) of this stack.
    pub fn authority(&self) -> &Authority {
        self.authority.as_ref().expect("authority was released")
    }

    /// Releases the store so another process can open the data dir.
    pub fn release_store(&mut self) {
        self.authority = None;
    }

    /// Connects with a creds file's text; returns the client and its connection events.
    pub async fn connect_creds(&self, creds: &str) -> (Client, Events) {
        let (options, rx) =
            with_events(async_nats::ConnectOptions::with_credentials(creds).unwrap());
        (options.connect(self.url()).await.unwrap(), rx)
    }

    /// Logs in through the callout: sentinel creds plus `options` (user/password or token).
    /// Returns the client and every connection event as text.
    ///
    /// Text, not [`Events`], only because tests/callout.rs names this receiver type; once it
    /// takes [`Events`], this can hand out the events themselves like `connect_creds`.
    pub async fn login(
        &self,
        options: async_nats::ConnectOptions,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), async_nats::ConnectError> {
        self.login_at(&self.url(), options).await
    }

    /// As [`Stack::login`], on the server at `url`.
    pub async fn login_at(
        &self,
        url: &str,
        options: async_nats::ConnectOptions,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), async_nats::ConnectError> {
        let sentinel = std::fs::read_to_string(self.layout.sentinel_creds()).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let options = options.credentials(&sentinel).unwrap().event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event.to_string());
            }
        });
        Ok((options.connect(url).await?, rx))
    }

    /// The service's own connection (service user of AUTH).
    pub async fn service_client(&self) -> Client {
        let settings = ConnectionSettings {
            urls: vec![self.url()],
            require_nats: true,
            ..ConnectionSettings::default()
        };
        connection::connect(self.authority(), &settings, std::future::pending())
            .await
            .unwrap()
            .client
    }
}

/// The service running in this process.
pub struct Running {
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), AppError>>>,
}

impl Running {
    /// Stops it the way a signal would and returns how `run` ended.
    pub async fn stop(mut self) -> Result<(), AppError> {
        self.stop.cancel();
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Stack {
    /// Runs the service (management endpoints and publisher) against this stack's server.
    pub fn serve(&self) -> Running {
        self.serve_with(PublisherSettings::default())
    }

    /// As [`Stack::serve`], with publisher settings.
    pub fn serve_with(&self, publisher: PublisherSettings) -> Running {
        self.serve_on(self.connection_settings(), publisher)
    }

    /// Connection settings for this stack's server, with short test back-offs.
    pub fn connection_settings(&self) -> ConnectionSettings {
        ConnectionSettings {
            urls: vec![self.url()],
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            ..ConnectionSettings::default()
        }
    }

    /// Runs the service with explicit connection and publisher settings.
    pub fn serve_on(
        &self,
        connection: ConnectionSettings,
        publisher: PublisherSettings,
    ) -> Running {
        let settings = app::Settings { connection, publisher, ..app::Settings::default() };
        let stop = CancellationToken::new();
        let task = tokio::spawn(app::run(
            self.authority().clone(),
            settings,
            stop.clone().cancelled_owned(),
        ));
        Running { stop, task: Some(task) }
    }

    /// A management client with the admin creds, once the service answers.
    pub async fn admin(&self) -> AdminClient {
        self.admin_at(&self.url()).await
    }

    /// A management client on the server at `url`, once the service answers there.
    pub async fn admin_at(&self, url: &str) -> AdminClient {
        let creds = std::fs::read_to_string(self.layout.admin_creds()).unwrap();
        let client = async_nats::ConnectOptions::with_credentials(&creds)
            .unwrap()
            .connect(url)
            .await
            .unwrap();
        // Probed with a short time-out: a request that goes unanswered (sent while the
        // service's subscriptions were being made, say) must not use up the whole deadline.
        let probe = AdminClient::new(client.clone(), API_PREFIX, Duration::from_secs(2));
        let admin = AdminClient::new(client, API_PREFIX, Duration::from_secs(10));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while probe.send(&GetStatus {}).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the service never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admin
    }

    /// A manager on this stack's store, as the service would have.
    pub fn manager(&self) -> Manager {
        Manager::new(self.authority().clone(), PasswordHasher::new(2))
    }
}

/// A second server with the same operator: its own config, ports and resolver dir.
pub struct Backup {
    pub settings: ServerSettings,
    pub server: NatsServer,
}

impl Backup {
    /// Its client URL.
    pub fn url(&self) -> String {
        self.settings.client_url()
    }
}

impl Stack {
    /// Writes a config for a backup server (same trust chain, other ports) and starts it.
    pub async fn start_backup(&self) -> Backup {
        let layout = Layout {
            data_dir: self.layout.data_dir.clone(),
            out_dir: self.dir.path().join("out-backup"),
        };
        let settings = ServerSettings {
            host: "127.0.0.1".into(),
            port: free_port(),
            http_port: free_port(),
            server_name: "authd-backup".into(),
        };
        bootstrap::write_outputs(self.authority(), &layout, &settings, model::now()).await.unwrap();
        let server = NatsServer::start(
            &nats_server_bin(),
            &layout.config_file(),
            &self.dir.path().join("nats-backup.log"),
            &settings.listen_addr(),
            &[],
            Duration::from_secs(15),
        )
        .await
        .unwrap();
        Backup { settings, server }
    }
}

/// Polls `check` every 50 ms until it is true; panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The connection events of one client, as async-nats reports them.
pub type Events = mpsc::UnboundedReceiver<Event>;

/// `options` reporting every connection event on the returned channel.
fn with_events(options: async_nats::ConnectOptions) -> (async_nats::ConnectOptions, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let options = options.event_callback(move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event);
        }
    });
    (options, rx)
}

/// What the server refused a client, from a permissions violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A publish to this subject.
    Publish(String),
    /// A subscription to this subject.
    Subscribe(String),
}

impl Denied {
    /// The subject refused.
    pub fn subject(&self) -> &str {
        match self {
            Denied::Publish(s) | Denied::Subscribe(s) => s,
        }
    }

    /// Reads nats-server's `-ERR 'Permissions Violation for Publish to "x"'` (or
    /// `Subscription to "x"`, perhaps `using queue "q"`). async-nats has no variant for it:
    /// it arrives as `ServerError::Other` with the server's text, the only place the
    /// operation and subject are given.
    fn parse(server_text: &str) -> Option<Denied> {
        let rest = server_text.split_once("Permissions Violation for ")?.1;
        let quoted = |s: &str| s.split('"').nth(1).map(str::to_string);
        if let Some(subject) = rest.strip_prefix("Publish to ") {
            quoted(subject).map(Denied::Publish)
        } else {
            rest.strip_prefix("Subscription to ").and_then(quoted).map(Denied::Subscribe)
        }
    }
}

/// What the waits below look for in a connection event.
pub trait Observed {
    /// The connection was lost.
    fn is_disconnect(&self) -> bool;
    /// The server refused a publish or subscription.
    fn denied(&self) -> Option<Denied>;
}

impl Observed for Event {
    fn is_disconnect(&self) -> bool {
        matches!(self, Event::Disconnected)
    }

    fn denied(&self) -> Option<Denied> {
        match self {
            Event::ServerError(ServerError::Other(text)) => Denied::parse(text),
            _ => None,
        }
    }
}

/// The text events [`Stack::login`] still hands out (see there); the same questions, asked
/// of `Event`'s `Display` text. Goes when tests/callout.rs takes [`Events`].
impl Observed for String {
    fn is_disconnect(&self) -> bool {
        self == &Event::Disconnected.to_string()
    }

    fn denied(&self) -> Option<Denied> {
        Denied::parse(self)
    }
}

/// The account JWT the server holds for `key` (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`, asked
/// over the service's connection), or `None` if it holds none or does not answer.
pub async fn held_jwt(service: &Client, key: &str) -> Option<String> {
    let reply =
        service.request(format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.LOOKUP"), "".into()).await.ok()?;
    (!reply.payload.is_empty()).then(|| String::from_utf8_lossy(&reply.payload).into_owned())
}

/// Waits (up to `within`) until the server holds a JWT for `key`, or (`held` false) none.
pub async fn await_held(service: &Client, key: &str, held: bool, within: Duration) {
    let what =
        if held { "the server to hold the account" } else { "the server to forget the account" };
    eventually(within, what, || async { held_jwt(service, key).await.is_some() == held }).await;
}

/// Waits until every queued push has gone out (and none failed).
pub async fn drained(admin: &AdminClient) {
    eventually(Duration::from_secs(20), "the claims queue to drain", || async {
        let status = admin.send(&GetStatus {}).await.unwrap();
        assert_eq!(
            status.failed_pushes,
            0,
            "a push failed: {:?}",
            admin.list_all(&ListPending::default()).await
        );
        status.queue_depth == 0
    })
    .await;
}

/// A user's creds file, from the API.
pub async fn creds(admin: &AdminClient, account: &str, name: &str) -> String {
    let user = UserRef::new(account_name(account), user_name(name));
    admin.send(&GetCreds(user)).await.unwrap().creds
}

/// Waits (5 s at most) for a permissions violation on `subject` (publish or subscribe)
/// among `events`.
pub async fn violation<E: Observed>(events: &mut mpsc::UnboundedReceiver<E>, subject: &str) {
    let what = format!("a permissions violation on {subject}");
    next_matching(events, Duration::from_secs(5), &what, |e| {
        e.denied().is_some_and(|d| d.subject() == subject)
    })
    .await;
}

/// Waits (5 s at most) for the server to refuse exactly `denied` among `events`.
pub async fn denied(events: &mut Events, denied: Denied) {
    let what = format!("the server to refuse {denied:?}");
    next_matching(events, Duration::from_secs(5), &what, |e| e.denied() == Some(denied.clone()))
        .await;
}

/// Waits for a disconnect among `events`; panics after `within`.
pub async fn disconnected_within<E: Observed>(
    events: &mut mpsc::UnboundedReceiver<E>,
    within: Duration,
) {
    next_matching(events, within, "a disconnect", E::is_disconnect).await;
}

/// Takes events until one satisfies `wanted`; panics naming `what` after `within`.
async fn next_matching<E>(
    events: &mut mpsc::UnboundedReceiver<E>,
    within: Duration,
    what: &str,
    wanted: impl Fn(&E) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("the client is gone");
        if wanted(&event) {
            return;
        }
    }
}

/// A validated account name (test input is known good).
pub fn account_name(name: &str) -> AccountName {
    AccountName::new(name).unwrap()
}

/// A validated user name.
pub fn user_name(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

/// A validated role name.
pub fn role_name(name: &str) -> RoleName {
    RoleName::new(name).unwrap()
}

/// The subjects as a permission's allow list.
pub fn allow(subjects: &[&str]) -> PermissionInput {
    PermissionInput::lists(subjects, &[])
}

/// A tenant account made over the API, to add roles and users to: the setup most tests
/// share.
///
/// ```ignore
/// let acme = tenant(&admin, "acme").await;
/// acme.role("sensor", &["sensors.*.telemetry"], &["_INBOX.>"]).await;
/// acme.user("dev1", "sensor", Some("dev1-password")).await;
/// ```
pub struct Tenant<'a> {
    admin: &'a AdminClient,
    /// The account as created.
    pub account: AccountView,
    /// Its name.
    pub name: AccountName,
}

/// Creates the tenant account `name`.
pub async fn tenant<'a>(admin: &'a AdminClient, name: &str) -> Tenant<'a> {
    let name = account_name(name);
    let account = admin.send(&CreateAccount::new(name.clone())).await.unwrap();
    Tenant { admin, account, name }
}

impl Tenant<'_> {
    /// Adds a role allowing publishing to `publish` and subscribing to `subscribe`.
    pub async fn role(&self, name: &str, publish: &[&str], subscribe: &[&str]) -> RoleView {
        let request = CreateRole {
            publish: allow(publish),
            subscribe: allow(subscribe),
            ..CreateRole::new(self.name.clone(), role_name(name))
        };
        self.admin.send(&request).await.unwrap()
    }

    /// Adds a role that may publish and subscribe to everything.
    pub async fn open_role(&self, name: &str) -> RoleView {
        self.role(name, &[">"], &[">"]).await
    }

    /// Adds a user holding `role`, with a password for callout logins if given.
    pub async fn user(&self, name: &str, role: &str, password: Option<&str>) -> UserView {
        let request = CreateUser {
            role: Some(role.to_string()),
            password: password.map(Password::new),
            ..CreateUser::new(self.name.clone(), user_name(name))
        };
        self.admin.send(&request).await.unwrap()
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Account public key of the connection, from `$SYS.REQ.USER.INFO` (imported by every account).
pub async fn account_of(client: &Client) -> String {
    let reply = client.request("$SYS.REQ.USER.INFO", "".into()).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    info["data"]["account"].as_str().unwrap_or_else(|| panic!("no account in {info}")).to_string()
}

/// The compiled `nats-authd`, to run in `dir` with a scrubbed environment: nothing of the
/// machine's (a developer's `NATS_AUTHD_*` or `RUST_LOG`) leaks in; only `PATH` and
/// `NATS_SERVER_BIN` are set, and each test adds what it means to.
pub fn nats_authd(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nats-authd"));
    cmd.current_dir(dir).env_clear().env("NATS_SERVER_BIN", nats_server_bin());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// Waits until the service behind `url` answers `status` (asked by the binary, as an admin
/// with `creds`, relative to `dir`), polling every 100 ms; panics after `within`. Returns the
/// status answer. Readiness is what the service says, not what a log line or a sleep implies.
pub fn await_status(dir: &Path, url: &str, creds: &Path, within: Duration) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let out = nats_authd(dir)
            .args(["--log", "off", "status", "--json", "--timeout", "1", "--nats-url", url])
            .arg("--creds")
            .arg(creds)
            .output()
            .unwrap();
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service at {url} never answered status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
