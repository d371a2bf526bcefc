//! The service's one NATS connection: as the service user of AUTH, signed from the store, to a
//! primary server with ordered backups.
//!
//! - **Bootstrap** (default): until a server answers nothing is served; async-nats keeps trying
//!   in the background and the log says so once ("waiting for NATS at ..."). With
//!   `require_nats` the first failed connect is an error instead.
//! - **Failover**: which server to try next is our decision ([`next_server`], a pure function
//!   that async-nats asks through its reconnect callback): the primary until it has failed
//!   `primary_retries` times in a row, then the backups in order, with exponential backoff.
//! - **Fast retry**: the server just lost (or the first one tried) is retried every
//!   [`FAST_RETRY_DELAY`] for [`FAST_RETRY_WINDOW`] before any of that counts as a failure. A
//!   restarted server is back in tens of milliseconds, and callout clients that reconnect to
//!   it before the service does wait out the callout time-out and are refused: the service
//!   must be first back, not 250 ms – 1 s later on its backoff. With a single server there is
//!   no backoff past [`SOLE_SERVER_RETRY`]: nothing to fail over to, only clients to beat.
//! - **Failback**: while on a backup, a task probes the primary every `failback_interval` and,
//!   when it answers, forces a reconnect that goes to the primary.
//!
//! - **TLS**: [`TlsFiles`] (`--tlsca`, `--tlscert`/`--tlskey`) apply to every server of the
//!   list; with any of them set, a server that does not speak TLS is refused, not used in clear.
//!
//! async-nats keeps subscriptions across reconnects, so the endpoints (and later the callout)
//! are there after every move, once. The one other connection the service makes, the callout's
//! receive-only early subscription (`callout::early`), follows this one's server through a
//! [`Dialer`]. Every move and state change is logged once, and
//! [`LinkStatus`] shows it to `authd.status`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, ReconnectToServer, ServerAddr};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::authority::{Authority, AuthorityError};
use crate::model::{self, AccountName, UnixTime, UserName};
use crate::names::{AUTH_ACCOUNT, SERVICE_USER};
use crate::policy;
use crate::trust;

/// Delay between attempts on the server just lost, during [`FAST_RETRY_WINDOW`]. A refused
/// connect costs a syscall; this is what bounds the gap between a restarted server listening
/// and the service being back on it, and every client that connects in that gap waits out the
/// callout time-out (`examples/load.rs` storm: 10 ms still let ~1 in 4 clients hit the wall).
pub const FAST_RETRY_DELAY: Duration = Duration::from_millis(2);

/// How long after losing a server it is retried every [`FAST_RETRY_DELAY`], without counting
/// failures: a restart (typically well under a second) ends within it, a dead server delays
/// the failover by it and then goes through `primary_retries` and the backoff as before.
pub const FAST_RETRY_WINDOW: Duration = Duration::from_secs(1);

/// Longest delay between attempts when there is only one server. Backing off is for moving
/// to a backup at the right time; with none, a longer delay only makes the service later than
/// the clients when the server returns after a restart longer than [`FAST_RETRY_WINDOW`]
/// (an upgrade, a JetStream recovery), and every callout client in that gap is refused.
pub const SOLE_SERVER_RETRY: Duration = Duration::from_millis(50);

/// How the service connects.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Server URLs, primary first, then backups in the order to try them.
    pub urls: Vec<String>,
    /// Consecutive failed attempts on the primary before moving to a backup.
    pub primary_retries: usize,
    /// Delay before the second attempt on a server (the first is immediate).
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Growth of the delay per failed attempt.
    pub backoff_multiplier: f64,
    /// How often to check, while on a backup, whether the primary is back.
    pub failback_interval: Duration,
    /// Time-out of one connect attempt.
    pub connect_timeout: Duration,
    /// Time-out of requests the service makes.
    pub request_timeout: Duration,
    /// Exit on the first failed connect instead of waiting for a server.
    pub require_nats: bool,
    /// TLS: the CA to trust, a client certificate for servers that verify clients.
    pub tls: TlsFiles,
}

/// The TLS files of a connection. None set: TLS only if the server asks for it, verified
/// against the system's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA file (PEM) to verify the server's certificate with, instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and its key (PEM), for servers that verify clients (mTLS).
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Whether any file is set (and so TLS is required).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// `options` with these files, requiring TLS if any is set.
    pub fn apply(&self, mut options: ConnectOptions) -> ConnectOptions {
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        // A CA or a certificate means TLS is expected: never fall back to plain text.
        options.require_tls(self.is_set())
    }

    /// Checks that each file can be read and holds PEM. async-nats reads them only at each
    /// connect attempt, and a waiting service would retry a typo forever.
    ///
    /// # Errors
    /// [`ConnectionError::TlsFile`] naming the first file that cannot be used.
    pub async fn check(&self) -> Result<(), ConnectionError> {
        let files: Vec<PathBuf> = self
            .ca
            .iter()
            .chain(self.client.iter().flat_map(|(cert, key)| [cert, key]))
            .cloned()
            .collect();
        tokio::task::spawn_blocking(move || files.iter().try_for_each(|path| check_pem(path)))
            .await
            .map_err(|e| ConnectionError::TlsFile { path: PathBuf::new(), cause: e.to_string() })?
    }
}

/// A file that can be read and has a PEM block. Its content is never put in the error: it
/// may be a private key.
fn check_pem(path: &Path) -> Result<(), ConnectionError> {
    let error = |cause: String| ConnectionError::TlsFile { path: path.to_path_buf(), cause };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(error("not a PEM file (no -----BEGIN line)".into()));
    }
    Ok(())
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            urls: vec!["nats://127.0.0.1:4222".into()],
            primary_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            backoff_multiplier: 2.0,
            failback_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            require_nats: false,
            tls: TlsFiles::default(),
        }
    }
}

impl ConnectionSettings {
    /// The delay before an attempt on a server that has failed `failures` times in a row.
    pub fn backoff(&self, failures: usize) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.backoff_multiplier.powi(exponent);
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_backoff).min(self.max_backoff)
    }
}

/// Which configured server to try next, and after what delay, given each one's consecutive
/// failures (primary first).
///
/// The primary while it has failed fewer than `primary_retries` times; then the backup with
/// the fewest failures (earlier ones first); when every server has failed that often, the one
/// with the fewest failures, the primary winning ties.
pub fn next_server(failures: &[usize], settings: &ConnectionSettings) -> (usize, Duration) {
    let Some(&primary) = failures.first() else { return (0, Duration::ZERO) };
    let choice = if primary < settings.primary_retries || failures.len() == 1 {
        0
    } else {
        let (backup, fewest) = failures
            .iter()
            .enumerate()
            .skip(1)
            .min_by_key(|(i, f)| (**f, *i))
            .expect("a backup exists");
        if *fewest < settings.primary_retries || *fewest < primary {
            backup
        } else {
            0
        }
    };
    let delay = settings.backoff(failures[choice]);
    (choice, if failures.len() == 1 { delay.min(SOLE_SERVER_RETRY) } else { delay })
}

/// Whether the connection is up, and how many times it has come up: a consumer that sees a
/// new `epoch` knows it reconnected, even if it missed the moment it was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub epoch: u64,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No server has answered yet.
    Bootstrapping,
    /// On the primary.
    Connected,
    /// Lost; trying to get back.
    Reconnecting,
    /// On a backup.
    FailedOver,
    /// Closed (shutting down).
    Closed,
}

/// The connection as `authd.status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    pub state: LinkState,
    /// URL of the server the connection is on (or was last on).
    pub url: Option<String>,
    pub last_failover_at: Option<UnixTime>,
    pub last_failback_at: Option<UnixTime>,
    /// Successful reconnects after the first connect.
    pub reconnects: u64,
    pub disconnects: u64,
}

impl LinkStatus {
    /// A link in `state` that has not moved yet.
    fn new(state: LinkState) -> Self {
        LinkStatus {
            state,
            url: None,
            last_failover_at: None,
            last_failback_at: None,
            reconnects: 0,
            disconnects: 0,
        }
    }
}

#[derive(Debug)]
struct Shared {
    urls: Vec<String>,
    addrs: Vec<ServerAddr>,
    status: LinkStatus,
    /// The server the reconnect callback chose last: where a `Connected` event lands.
    target: usize,
    /// Set by the failback task: go to the primary on the next attempt, at once.
    failback: bool,
    ever_connected: bool,
    /// Consecutive failed attempts per configured server. Ours, not async-nats's: its pool
    /// does not count every kind of failure (a name that does not resolve, for one).
    failures: Vec<usize>,
    /// An attempt is under way: the next callback means it failed.
    attempting: bool,
    /// While retrying fast: the server being retried and since when (see [`FAST_RETRY_WINDOW`]).
    fast: Option<(usize, Instant)>,
}

/// The service's connection, its state, and the failback task it owns.
#[derive(Debug)]
pub struct Connection {
    /// The client; async-nats reconnects it by itself, where [`next_server`] says.
    pub client: Client,
    /// Up or not, and the connect count; the publisher's circuit breaker watches it.
    pub state: watch::Receiver<Link>,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
    failback: Option<JoinHandle<()>>,
    /// For a second connection beside the client; `None` with TLS.
    dialer: Option<Dialer>,
}

/// What a hand-written connection beside the client needs (the callout's early subscription,
/// `callout::early`): the server the client is on or trying, and JWTs for the service user.
/// Plain TCP only: [`Connection::dialer`] offers none when TLS is configured.
#[derive(Clone)]
pub struct Dialer {
    shared: Arc<Mutex<Shared>>,
    connect_timeout: Duration,
    authority: Authority,
    account: Arc<model::AccountRecord>,
    user_key: String,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("user", &self.user_key).finish_non_exhaustive()
    }
}

impl Dialer {
    /// `host:port` of the server the client is connected to, or trying next; `None` when its
    /// URL asks for TLS or WebSocket, which the dialer does not speak.
    pub fn target(&self) -> Option<(String, u16)> {
        let shared = self.shared.lock().expect("connection state lock");
        let addr = &shared.addrs[shared.target];
        (!addr.tls_required() && !addr.is_websocket())
            .then(|| (addr.host().to_string(), addr.port()))
    }

    /// Time-out of one connect attempt, the client's own.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A bearer JWT for the service user (nats-server checks no nonce signature, so the
    /// `CONNECT` can be sent before the server's `INFO`) with `permissions`, valid until
    /// `expires`.
    ///
    /// # Errors
    /// If AUTH's signing key does not open.
    pub fn bearer_jwt(
        &self,
        mut permissions: crate::claims::UserPermissionLimits,
        expires: UnixTime,
    ) -> Result<String, crate::trust::TrustError> {
        permissions.bearer_token = true;
        trust::user_jwt(
            &self.account,
            &self.user_key,
            SERVICE_USER,
            permissions,
            Some(expires),
            self.authority.master(),
            model::now(),
        )
    }
}

impl Connection {
    /// The connection's status now.
    pub fn status(&self) -> LinkStatus {
        self.shared.lock().expect("connection state lock").status.clone()
    }

    /// A handle that reads the status from elsewhere (the status endpoint).
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(Arc::clone(&self.shared))
    }

    /// A dialer for a second, hand-written connection beside the client; `None` when TLS is
    /// configured (the dialer speaks plain TCP only).
    pub fn dialer(&self) -> Option<Dialer> {
        self.dialer.clone()
    }

    /// Stops the failback task and drains the client: pending replies go out, then it closes.
    pub async fn close(mut self) {
        self.stop.cancel();
        if let Some(task) = self.failback.take() {
            let _ = task.await;
        }
        if let Err(e) = self.client.drain().await {
            tracing::warn!(error = %e, "draining the NATS connection failed");
        }
    }
}

/// Reads the connection status; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<Mutex<Shared>>);

impl StatusHandle {
    /// The connection's status now.
    pub fn get(&self) -> LinkStatus {
        self.0.lock().expect("connection state lock").status.clone()
    }
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// A URL is not a NATS server address.
    #[error("invalid NATS URL {url:?}: {cause}")]
    BadUrl { url: String, cause: String },
    /// `--require-nats` and the first attempt failed.
    #[error("cannot connect to NATS at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// Shut down before a server answered.
    #[error("shut down while waiting for NATS")]
    Cancelled,
    /// A TLS file (`--tlsca`, `--tlscert`, `--tlskey`) cannot be used.
    #[error("cannot use TLS file {}: {cause}", path.display())]
    TlsFile { path: PathBuf, cause: String },
}

/// Connects as the service user, waiting for a server unless `require_nats` is set.
///
/// # Errors
/// [`ConnectionError::Unreachable`] in fail-fast mode, [`ConnectionError::Cancelled`] if
/// `shutdown` completes first, key or store errors.
pub async fn connect(
    authority: &Authority,
    settings: &ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<Connection, ConnectionError> {
    settings.tls.check().await?;
    let auth = AccountName::new(AUTH_ACCOUNT).expect("valid");
    let account = authority.account(&auth).await?;
    let user = authority.user(&auth, &UserName::new(SERVICE_USER).expect("valid")).await?;
    let jwt = trust::user_jwt(
        &account,
        &user.identity.public,
        user.name.as_str(),
        policy::user_permissions(&user, None),
        None,
        authority.master(),
        model::now(),
    )
    .map_err(AuthorityError::from)?;
    let key_pair = Arc::new(user.identity.key_pair(authority.master())?);

    let addrs = settings
        .urls
        .iter()
        .map(|url| {
            ServerAddr::from_str(url)
                .map_err(|e| ConnectionError::BadUrl { url: url.clone(), cause: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(Mutex::new(Shared {
        urls: settings.urls.clone(),
        addrs: addrs.clone(),
        status: LinkStatus::new(LinkState::Bootstrapping),
        target: 0,
        failback: false,
        ever_connected: false,
        failures: vec![0; settings.urls.len()],
        attempting: false,
        fast: None,
    }));
    let (up_tx, up) = watch::channel(Link::default());
    let up_tx = Arc::new(up_tx);

    let options = ConnectOptions::with_jwt(jwt, move |nonce| {
        let key_pair = Arc::clone(&key_pair);
        async move { key_pair.sign(&nonce).map_err(async_nats::AuthError::new) }
    })
    .name("nats-authd")
    .connection_timeout(settings.connect_timeout)
    .request_timeout(Some(settings.request_timeout))
    .max_reconnects(None)
    .retain_servers_order()
    // The configured list is the whole list: a primary and its backups, nothing gossiped.
    .ignore_discovered_servers()
    .reconnect_to_server_callback({
        let (shared, settings) = (Arc::clone(&shared), settings.clone());
        move |_pool, _info| {
            let choice = choose(&shared, &settings);
            async move { choice }
        }
    })
    .event_callback({
        let shared = Arc::clone(&shared);
        move |event| {
            let (shared, up_tx) = (Arc::clone(&shared), Arc::clone(&up_tx));
            async move { on_event(&shared, &up_tx, event) }
        }
    });
    let options = settings.tls.apply(options);

    let urls = settings.urls.join(", ");
    let client = if settings.require_nats {
        options
            .connect(addrs.clone())
            .await
            .map_err(|e| ConnectionError::Unreachable { url: urls.clone(), cause: e.to_string() })?
    } else {
        let client =
            options.retry_on_initial_connect().connect(addrs.clone()).await.map_err(|e| {
                ConnectionError::Unreachable { url: urls.clone(), cause: e.to_string() }
            })?;
        wait_until_up(up.clone(), &urls, shutdown).await?;
        client
    };
    let info = client.server_info();
    tracing::info!(server = %info.server_name, url = %current_url(&shared), "connected to NATS");

    let stop = CancellationToken::new();
    let failback = (settings.urls.len() > 1).then(|| {
        tokio::spawn(failback_task(
            client.clone(),
            Arc::clone(&shared),
            settings.clone(),
            stop.clone(),
        ))
    });
    let dialer = (!settings.tls.is_set()).then(|| Dialer {
        shared: Arc::clone(&shared),
        connect_timeout: settings.connect_timeout,
        authority: authority.clone(),
        account: Arc::new(account),
        user_key: user.identity.public.clone(),
    });
    Ok(Connection { client, state: up, shared, stop, failback, dialer })
}

async fn wait_until_up(
    mut up: watch::Receiver<Link>,
    urls: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConnectionError> {
    tokio::pin!(shutdown);
    let mut announced = false;
    loop {
        if up.borrow_and_update().up {
            return Ok(());
        }
        if !announced {
            tracing::warn!(url = %urls, "waiting for NATS");
            announced = true;
        }
        tokio::select! {
            changed = up.changed() => if changed.is_err() { return Err(ConnectionError::Cancelled) },
            () = &mut shutdown => return Err(ConnectionError::Cancelled),
        }
    }
}

fn current_url(shared: &Mutex<Shared>) -> String {
    let shared = shared.lock().expect("connection state lock");
    shared.status.url.clone().unwrap_or_else(|| shared.urls[0].clone())
}

/// The reconnect callback: retries fast during [`FAST_RETRY_WINDOW`], else counts the
/// previous attempt's failure and applies [`next_server`].
fn choose(shared: &Mutex<Shared>, settings: &ConnectionSettings) -> Option<ReconnectToServer> {
    let mut shared = shared.lock().expect("connection state lock");
    let (index, delay) = choose_at(&mut shared, settings, Instant::now());
    Some(ReconnectToServer { addr: shared.addrs[index].clone(), delay: Some(delay) })
}

/// [`choose`] at `now`: the server to try and the delay before trying it.
fn choose_at(
    shared: &mut Shared,
    settings: &ConnectionSettings,
    now: Instant,
) -> (usize, Duration) {
    let retrying = std::mem::replace(&mut shared.attempting, true);
    if std::mem::take(&mut shared.failback) {
        // A forced move to the primary, which a probe just found up: no fast retries there
        // (if it fails, the backup is the better bet).
        shared.fast = None;
        shared.target = 0;
        return (0, Duration::ZERO);
    }
    if !retrying {
        // The first attempt after losing the link (or at start): immediate, then fast retries.
        let (index, delay) = next_server(&shared.failures, settings);
        shared.fast = Some((index, now));
        shared.target = index;
        return (index, delay);
    }
    if let Some((index, since)) = shared.fast {
        if now.saturating_duration_since(since) < FAST_RETRY_WINDOW {
            shared.target = index;
            return (index, FAST_RETRY_DELAY);
        }
        shared.fast = None;
    }
    let target = shared.target;
    shared.failures[target] += 1;
    let (index, delay) = next_server(&shared.failures, settings);
    shared.target = index;
    (index, delay)
}

fn on_event(shared: &Mutex<Shared>, up: &watch::Sender<Link>, event: Event) {
    let mut shared = shared.lock().expect("connection state lock");
    match event {
        Event::Connected => {
            let now = model::now();
            let target = shared.target;
            shared.failures[target] = 0;
            shared.attempting = false;
            let url = shared.urls[target].clone();
            let previous = shared.status.url.replace(url.clone());
            let on_primary = shared.target == 0;
            shared.status.state =
                if on_primary { LinkState::Connected } else { LinkState::FailedOver };
            if shared.ever_connected {
                shared.status.reconnects += 1;
            }
            shared.ever_connected = true;
            match previous {
                Some(from) if from != url && on_primary => {
                    shared.status.last_failback_at = Some(now);
                    tracing::info!(%from, to = %url, reason = "primary answers again", "failed back to the primary");
                }
                Some(from) if from != url => {
                    shared.status.last_failover_at = Some(now);
                    tracing::warn!(%from, to = %url, reason = "primary unreachable", "failed over to a backup");
                }
                Some(_) => tracing::info!(url = %url, "NATS connection restored"),
                None if !on_primary => {
                    shared.status.last_failover_at = Some(now);
                    tracing::warn!(from = %shared.urls[0], to = %url, reason = "primary unreachable", "started on a backup");
                }
                None => {}
            }
            up.send_modify(|l| *l = Link { up: true, epoch: l.epoch + 1 });
        }
        Event::Disconnected => {
            shared.status.state = LinkState::Reconnecting;
            shared.status.disconnects += 1;
            tracing::warn!(url = ?shared.status.url, "NATS connection lost; reconnecting");
            up.send_modify(|l| l.up = false);
        }
        Event::Closed => {
            shared.status.state = LinkState::Closed;
            up.send_modify(|l| l.up = false);
        }
        Event::Draining => tracing::info!("NATS connection draining"),
        Event::LameDuckMode => {
            tracing::warn!(url = ?shared.status.url, "NATS server entering lame duck mode")
        }
        Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
        other => tracing::debug!(event = %other, "NATS connection event"),
    }
}

/// While on a backup: probe the primary every `failback_interval`, and go back when it answers.
async fn failback_task(
    client: Client,
    shared: Arc<Mutex<Shared>>,
    settings: ConnectionSettings,
    stop: CancellationToken,
) {
    let primary = shared.lock().expect("connection state lock").addrs[0].clone();
    let addr = if primary.host().contains(':') {
        format!("[{}]:{}", primary.host(), primary.port())
    } else {
        format!("{}:{}", primary.host(), primary.port())
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(settings.failback_interval) => {}
            () = stop.cancelled() => return,
        }
        if shared.lock().expect("connection state lock").status.state != LinkState::FailedOver {
            continue;
        }
        if !probe(&addr, settings.connect_timeout).await {
            tracing::debug!(%addr, "primary still unreachable");
            continue;
        }
        tracing::info!(%addr, "primary answers again; failing back");
        shared.lock().expect("connection state lock").failback = true;
        if let Err(e) = client.force_reconnect().await {
            shared.lock().expect("connection state lock").failback = false;
            tracing::warn!(error = %e, "failback reconnect failed");
        }
    }
}

/// True once something on `addr` (host:port) speaks NATS: sends `INFO` on connect.
pub async fn probe(addr: &str, within: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"INFO")
    };
    matches!(tokio::time::timeout(within, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(retries: usize) -> ConnectionSettings {
        ConnectionSettings {
            primary_retries: retries,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..ConnectionSettings::default()
        }
    }

    #[test]
    fn the_primary_is_retried_before_failing_over_in_order() {
        let s = settings(3);
        assert_eq!(next_server(&[0, 0, 0], &s), (0, Duration::ZERO));
        assert_eq!(next_server(&[1, 0, 0], &s), (0, Duration::from_millis(100)));
        assert_eq!(next_server(&[2, 0, 0], &s), (0, Duration::from_millis(200)));
        assert_eq!(next_server(&[3, 0, 0], &s), (1, Duration::ZERO), "first backup");
        assert_eq!(next_server(&[3, 1, 0], &s), (2, Duration::ZERO), "next healthy backup");
        assert_eq!(
            next_server(&[4, 3, 3], &s),
            (1, Duration::from_millis(400)),
            "all failing: fewest failures"
        );
        assert_eq!(
            next_server(&[3, 3, 3], &s),
            (0, Duration::from_millis(400)),
            "ties go to the primary"
        );
        assert_eq!(
            next_server(&[9], &s),
            (0, SOLE_SERVER_RETRY),
            "no backup: the primary, never more than SOLE_SERVER_RETRY apart"
        );
    }

    fn shared(servers: usize) -> Shared {
        let urls: Vec<String> =
            (0..servers).map(|i| format!("nats://127.0.0.1:{}", 4222 + i)).collect();
        Shared {
            addrs: urls.iter().map(|u| ServerAddr::from_str(u).unwrap()).collect(),
            urls,
            status: LinkStatus::new(LinkState::Connected),
            target: 0,
            failback: false,
            ever_connected: true,
            failures: vec![0; servers],
            attempting: false,
            fast: None,
        }
    }

    #[test]
    fn a_lost_server_is_retried_fast_for_a_window_then_backed_off_and_failed_over() {
        let s = settings(2);
        let mut state = shared(2);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(choose_at(&mut state, &s, at(0)), (0, Duration::ZERO), "first: at once");
        for ms in [1, 500, 999] {
            assert_eq!(choose_at(&mut state, &s, at(ms)), (0, FAST_RETRY_DELAY), "{ms} ms");
        }
        assert_eq!(state.failures, [0, 0], "fast retries are not failures");
        let window = FAST_RETRY_WINDOW.as_millis() as u64;
        assert_eq!(choose_at(&mut state, &s, at(window)), (0, Duration::from_millis(100)));
        assert_eq!(choose_at(&mut state, &s, at(window + 100)), (1, Duration::ZERO), "failover");
        // Connected to the backup, then a forced failback: the primary at once, no fast phase.
        state.attempting = false;
        state.failures[1] = 0;
        state.failback = true;
        assert_eq!(choose_at(&mut state, &s, at(window + 200)), (0, Duration::ZERO));
        assert_eq!(choose_at(&mut state, &s, at(window + 201)), (1, Duration::ZERO));
    }

    #[test]
    fn backoff_grows_by_the_multiplier_up_to_the_ceiling() {
        let s = ConnectionSettings { backoff_multiplier: 3.0, ..settings(1) };
        let delays: Vec<_> = (0..6).map(|n| s.backoff(n)).collect();
        assert_eq!(delays, [0, 100, 300, 900, 1000, 1000].map(Duration::from_millis),);
    }
}
