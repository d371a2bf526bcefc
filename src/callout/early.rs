//! The callout subscription sent in the same write as its `CONNECT`.
//!
//! After a server restart, a client whose login reaches the callout before the service's
//! subscription is in place gets no answer: the server does not check for interest, waits out
//! its callout time-out (2 s) and refuses the client. async-nats sends subscriptions only after
//! the server's `PONG` to its `CONNECT`, a round trip during which a reconnect storm's first
//! clients are accepted, and it must first read the server's `INFO` (the nonce to sign). In a
//! storm the server accepts hundreds of connections in those milliseconds and serves them
//! all at once: measured, the service's subscription landed 30–300 ms after the server took
//! its connection, and 10–230 of 300 callout clients were refused.
//!
//! This task keeps a second, minimal connection as the service user (`wire`) that writes
//! `CONNECT`, the queue subscription and `PING` as one buffer the moment the TCP connection is
//! up, before the server's `INFO`: it authenticates with a bearer JWT (no nonce to sign) that
//! allows one subscription, to `$SYS.REQ.USER.AUTH` in the service's queue group, and no
//! publish, and expires after [`BEARER_TTL`]. The server sets up the subscription as the first
//! thing it reads from that connection, ahead of clients that each still need a round trip
//! (though a server busy with a storm may still serve some of them first). It only receives:
//! requests go into the same backlog as the client's, and the handlers answer through the
//! client (which queues the answer until it is back, milliseconds later).
//!
//! The `CONNECT` goes out before `INFO` only to an address whose last `INFO` said plain TCP,
//! and not again after `EARLY_MISSES` attempts in a row that got no plain `INFO`; an address
//! that asks for TLS is not tried again. A server that switched to TLS gets the JWT in clear at
//! most that many times.
//!
//! It follows the client's server ([`Dialer::target`]). For [`FAST_RETRY_WINDOW`] after losing
//! it, it dials the address that last spoke plain NATS every `SPIN_DELAY` from a blocking
//! thread (`dial_spinning`); then every [`SOLE_SERVER_RETRY`]. It stays off where TLS is
//! configured or asked for by the server.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, HeaderName, Message};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backlog::Waiting;
use super::{CalloutStats, AUTH_SUBJECT, QUEUE_GROUP};
use crate::claims::{Permission, UserPermissionLimits};
use crate::connection::{Dialer, FAST_RETRY_DELAY, FAST_RETRY_WINDOW, SOLE_SERVER_RETRY};
use crate::model::{self, UnixTime};
use crate::wire::{self, Connect, ServerOp, WireError};

/// The subscription's id on its connection (the only one).
const SID: u64 = 1;
/// Our own keep-alive: a half-open connection (a server host gone without a FIN) is noticed
/// within two of these.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Delay after the server refused the connection (`-ERR`): not worth hammering.
const REFUSED_DELAY: Duration = Duration::from_secs(1);
/// Early `CONNECT`s in a row without a plain `INFO` after which the next attempt waits for
/// one: what a server sees in clear if the address stopped speaking plain NATS.
const EARLY_MISSES: u32 = 3;
/// Pause between connect attempts in [`dial_spinning`].
const SPIN_DELAY: Duration = Duration::from_micros(250);
/// Time-out of one of those attempts. A server further away than this gets the ordinary
/// attempts once the window is over.
const SPIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// How often a connection checks that the client is still on its server (after a failover or
/// a failback it follows).
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// How often to look again whether the client's server has become plain TCP.
const OFF_DELAY: Duration = Duration::from_secs(5);
/// Lifetime of the bearer JWT: a copy taken off the wire is of use for at most this long (and
/// only to subscribe to authorization requests). The server closes the connection when it
/// expires, and the next one gets a fresh JWT.
pub const BEARER_TTL: Duration = Duration::from_secs(3600);

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// It was up (the server answered our `PING`) and then went.
    Lost,
    /// It never came up: refused, reset, timed out.
    Failed(String),
    /// The server said `-ERR` (after its `INFO`).
    Refused(String),
    /// The server wants TLS.
    Tls,
    /// Ended on purpose: the client moved to another server, or the JWT is due for renewal.
    Renew,
}

/// What one attempt learnt about its address.
#[derive(Debug, Default)]
struct Seen {
    /// The server's `INFO` said plain TCP, on a connection to this address.
    plain_info: Option<SocketAddr>,
    /// The `CONNECT` went out before any `INFO`.
    wrote_early: bool,
}

/// Receives authorization requests into `waiting` until `stop`.
pub async fn run(
    dialer: Dialer,
    waiting: Arc<Waiting<(Message, Instant)>>,
    stats: Arc<CalloutStats>,
    stop: CancellationToken,
) {
    // From the start, as after a loss: the server may be coming up right now.
    let mut lost_at = Instant::now();
    let mut last_complaint = String::new();
    let mut bearer = Bearer::default();
    let mut known = Known::default();
    loop {
        let target = dialer.target().filter(|target| !known.wants_tls(target));
        let delay = match target {
            None => OFF_DELAY,
            Some(target) => {
                let (host, port) = target.clone();
                let mut seen = Seen::default();
                let ended = match bearer.jwt(&dialer) {
                    Err(e) => Ended::Refused(format!("cannot sign its JWT: {e}")),
                    Ok((jwt, renew_at)) => {
                        let in_window = lost_at.elapsed() < FAST_RETRY_WINDOW;
                        let follow = || dialer.target();
                        let attempt = Attempt {
                            host: &host,
                            port,
                            jwt,
                            early: known.plain_at(&target).map(|addr| {
                                (addr, in_window.then_some(lost_at + FAST_RETRY_WINDOW))
                            }),
                            renew_at,
                            connect_timeout: dialer.connect_timeout(),
                            target: &follow,
                        };
                        tokio::select! {
                            () = stop.cancelled() => return,
                            ended = attempt.run(&mut seen, &waiting, &stats) => ended,
                        }
                    }
                };
                known.learn(&target, &seen, matches!(ended, Ended::Tls));
                match ended {
                    Ended::Lost => {
                        tracing::debug!(%host, port, "early callout subscription lost; retrying");
                        lost_at = Instant::now();
                        last_complaint.clear();
                        FAST_RETRY_DELAY
                    }
                    Ended::Renew => Duration::ZERO,
                    Ended::Failed(_) if lost_at.elapsed() < FAST_RETRY_WINDOW => FAST_RETRY_DELAY,
                    Ended::Failed(cause) => {
                        tracing::debug!(%host, port, %cause, "early callout subscription: no server");
                        SOLE_SERVER_RETRY
                    }
                    Ended::Refused(cause) => {
                        if cause != last_complaint {
                            tracing::warn!(%host, port, %cause, "the early callout subscription was refused");
                            last_complaint = cause;
                        }
                        REFUSED_DELAY
                    }
                    Ended::Tls => {
                        tracing::info!(%host, port, "the server asks for TLS: no early callout subscription there");
                        OFF_DELAY
                    }
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// What the task learnt of the addresses it dialed: where the `CONNECT` may go before `INFO`
/// (and the address that spoke plain NATS there), and where TLS was asked for.
#[derive(Debug, Default)]
struct Known {
    /// The target whose last `INFO` said plain TCP, and the address that said it: the fast
    /// dial goes there, not to whichever address the name resolves to first.
    plain: Option<((String, u16), SocketAddr)>,
    /// A target that asked for TLS: not tried again (the client's own URL is `nats://`).
    tls: Option<(String, u16)>,
    /// Early `CONNECT`s in a row that got no plain `INFO` back.
    misses: u32,
}

impl Known {
    /// Where to write the `CONNECT` before `INFO` at `target`, if anywhere.
    fn plain_at(&self, target: &(String, u16)) -> Option<SocketAddr> {
        self.plain.as_ref().filter(|(at, _)| at == target).map(|(_, addr)| *addr)
    }

    fn wants_tls(&self, target: &(String, u16)) -> bool {
        self.tls.as_ref() == Some(target)
    }

    /// Takes in what one attempt at `target` saw; `tls`: its server asked for TLS.
    fn learn(&mut self, target: &(String, u16), seen: &Seen, tls: bool) {
        if tls {
            self.plain = None;
            self.tls = Some(target.clone());
            self.misses = 0;
        } else if let Some(addr) = seen.plain_info {
            self.plain = Some((target.clone(), addr));
            self.misses = 0;
        } else if seen.wrote_early {
            // Written before an `INFO` that never came plain. Once or twice is a server going
            // down (it still accepts while it closes); a few in a row is not NATS in plain
            // TCP, and the JWT waits for a plain `INFO` again.
            self.misses += 1;
            if self.misses >= EARLY_MISSES {
                tracing::debug!(host = %target.0, port = target.1, "early: no plain INFO after early CONNECTs");
                self.plain = None;
                self.misses = 0;
            }
        }
    }
}

/// What the bearer JWT allows: one subscription to authorization requests, in the service's
/// queue group only (so a stolen copy cannot take every request), and no publish.
fn receive_only() -> UserPermissionLimits {
    let mut limits = crate::policy::deny_all();
    limits.permissions.subscribe =
        Permission { allow: vec![format!("{AUTH_SUBJECT} {QUEUE_GROUP}")], deny: vec![] };
    limits.limits.subs = 1;
    limits
}

/// The bearer JWT, minted again when half its life is gone.
#[derive(Default)]
struct Bearer(Option<(String, UnixTime)>);

impl Bearer {
    /// The JWT, and when a connection made with it should end to take a fresh one (well
    /// before the server would cut it at expiry).
    fn jwt(&mut self, dialer: &Dialer) -> Result<(&str, Instant), crate::trust::TrustError> {
        let now = model::now();
        let ttl = BEARER_TTL.as_secs() as i64;
        if self.0.as_ref().is_none_or(|(_, expires)| expires - now < ttl / 2) {
            let expires = now + ttl;
            self.0 = Some((dialer.bearer_jwt(receive_only(), expires)?, expires));
        }
        let (jwt, expires) = self.0.as_ref().expect("just minted");
        let renew_in = u64::try_from(expires - now - ttl / 2).unwrap_or(0).max(1);
        Ok((jwt, Instant::now() + Duration::from_secs(renew_in)))
    }
}

/// One connection attempt.
struct Attempt<'a> {
    host: &'a str,
    port: u16,
    jwt: &'a str,
    /// Write the `CONNECT` before reading the server's `INFO`, to this address (it spoke plain
    /// NATS last time); with an instant, dial it from a blocking thread every [`SPIN_DELAY`]
    /// until then.
    early: Option<(SocketAddr, Option<Instant>)>,
    /// When to end the connection to take a fresh JWT.
    renew_at: Instant,
    connect_timeout: Duration,
    /// The client's server now: the connection ends when it is another.
    target: &'a (dyn Fn() -> Option<(String, u16)> + Sync),
}

impl Attempt<'_> {
    /// From connect to its end; what it learnt about the address goes into `seen`.
    async fn run(
        &self,
        seen: &mut Seen,
        waiting: &Waiting<(Message, Instant)>,
        stats: &CalloutStats,
    ) -> Ended {
        let failed = |e: &dyn std::fmt::Display| Ended::Failed(e.to_string());
        let hello = wire::connect_and_subscribe(
            &Connect::new(self.jwt, None, "nats-authd callout"),
            AUTH_SUBJECT,
            QUEUE_GROUP,
            SID,
        );
        let (stream, written) = match self.early {
            Some((addr, Some(until))) => {
                match dial_spinning(addr, &hello, until, self.connect_timeout).await {
                    Dialed::Ready(stream) => {
                        seen.wrote_early = true;
                        (stream, true)
                    }
                    Dialed::WriteFailed(e) => {
                        // Some of the `CONNECT` may have gone out.
                        seen.wrote_early = true;
                        return failed(&e);
                    }
                    Dialed::NotBack => return failed(&"not back within the fast-retry window"),
                }
            }
            _ => {
                let connect = TcpStream::connect((self.host, self.port));
                match tokio::time::timeout(self.connect_timeout, connect).await {
                    Ok(Ok(stream)) => (stream, false),
                    Ok(Err(e)) => return failed(&e),
                    Err(_) => return failed(&"connect timed out"),
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let (mut reader, mut writer) = stream.into_split();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        if self.early.is_some() && !written {
            seen.wrote_early = true;
            if let Err(e) = writer.write_all(&hello).await {
                return failed(&e);
            }
        }

        let greeting = tokio::time::timeout(self.connect_timeout, async {
            loop {
                match wire::parse(&mut buf) {
                    Ok(Some(ServerOp::Info(info))) => return Ok(info),
                    Ok(Some(other)) => return Err(format!("expected INFO, got {other:?}")),
                    Ok(None) => {}
                    Err(e) => return Err(e.to_string()),
                }
                match reader.read_buf(&mut buf).await {
                    Ok(0) => return Err("closed before INFO".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        let info = match greeting {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return failed(&e),
            Err(_) => return failed(&"no INFO in time"),
        };
        if info.tls_required {
            return Ended::Tls;
        }
        seen.plain_info = peer;
        if self.early.is_none() {
            if let Err(e) = writer.write_all(&hello).await {
                return failed(&e);
            }
        }

        let (host, port) = (self.host, self.port);
        let mut up = false;
        let mut awaiting_pong = true;
        let mut keepalive = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut moved = tokio::time::interval(FOLLOW_INTERVAL);
        let renew = tokio::time::sleep_until(self.renew_at);
        tokio::pin!(renew);
        loop {
            loop {
                let op = match wire::parse(&mut buf) {
                    Ok(Some(op)) => op,
                    Ok(None) => break,
                    Err(e) => return protocol_error(up, &e),
                };
                match op {
                    ServerOp::Msg(msg) => match message(msg) {
                        Some(msg) => {
                            if waiting.push((msg, Instant::now())) {
                                stats.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        None => {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "dropped an authorization request with a malformed header"
                            );
                        }
                    },
                    ServerOp::Ping => {
                        if let Err(e) = writer.write_all(wire::PONG).await {
                            return if up { Ended::Lost } else { failed(&e) };
                        }
                    }
                    ServerOp::Pong => {
                        if !up {
                            tracing::debug!(%host, port, "early callout subscription in place");
                        }
                        up = true;
                        awaiting_pong = false;
                    }
                    ServerOp::Err(text) => return Ended::Refused(text),
                    ServerOp::Ok | ServerOp::Info(_) => {}
                }
            }
            tokio::select! {
                read = reader.read_buf(&mut buf) => match read {
                    Ok(n) if n > 0 => {}
                    Ok(_) if up => return Ended::Lost,
                    Ok(_) => return failed(&"closed by the server"),
                    Err(_) if up => return Ended::Lost,
                    Err(e) => return failed(&e),
                },
                _ = keepalive.tick() => {
                    if awaiting_pong {
                        return if up { Ended::Lost } else { failed(&"no PONG") };
                    }
                    if writer.write_all(wire::PING).await.is_err() {
                        return Ended::Lost;
                    }
                    awaiting_pong = true;
                }
                _ = moved.tick() => {
                    if (self.target)() != Some((host.to_string(), port)) {
                        return Ended::Renew;
                    }
                }
                () = &mut renew => return Ended::Renew,
            }
        }
    }
}

/// What [`dial_spinning`] came to.
enum Dialed {
    /// Connected, `CONNECT` written.
    Ready(TcpStream),
    /// Connected, but the write failed.
    WriteFailed(std::io::Error),
    /// No connection before the window closed (or the task stopped).
    NotBack,
}

/// Connects to `addr` and writes `hello` the moment the connection is up, trying every
/// [`SPIN_DELAY`] until `until`. tokio's timers tick in milliseconds, and a restarted server
/// takes the connections that queued up all at once: clients reconnecting on their own
/// backoff arrive in waves, and the service must be in before a wave, not up to 3 ms after
/// the listener opens. So this runs on a blocking thread (one at a time: the attempt waits
/// for it), for at most the fast-retry window.
async fn dial_spinning(
    addr: SocketAddr,
    hello: &[u8],
    until: Instant,
    connect_timeout: Duration,
) -> Dialed {
    let (hello, until) = (hello.to_vec(), until.into_std());
    // Set when this future is dropped (shutdown): the thread stops at its next attempt.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let dialed = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        while !stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            // Short, whatever the client's own: in a storm the listen backlog overflows and
            // a dropped SYN is resent by the kernel only after a second, while a new attempt
            // goes out at once (with the client's time-out, 1,000-client storms got worse).
            let timeout = SPIN_CONNECT_TIMEOUT.min(connect_timeout).min(left);
            let timeout = timeout.max(Duration::from_millis(1));
            match std::net::TcpStream::connect_timeout(&addr, timeout) {
                Ok(mut stream) => {
                    let _ = stream.set_nodelay(true);
                    return match stream.write_all(&hello) {
                        Ok(()) => Ok(stream),
                        Err(e) => Err(Some(e)),
                    };
                }
                Err(_) => std::thread::sleep(SPIN_DELAY),
            }
        }
        Err(None)
    })
    .await;
    let stream = match dialed {
        Ok(Ok(stream)) => stream,
        Ok(Err(Some(e))) => return Dialed::WriteFailed(e),
        Ok(Err(None)) | Err(_) => return Dialed::NotBack,
    };
    match stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
        Ok(stream) => Dialed::Ready(stream),
        Err(e) => Dialed::WriteFailed(e),
    }
}

fn protocol_error(up: bool, e: &WireError) -> Ended {
    tracing::warn!(error = %e, "the early callout subscription read something that is not NATS");
    if up {
        Ended::Lost
    } else {
        Ended::Failed(e.to_string())
    }
}

/// The message as async-nats would have delivered it; `None` if a header name is not one
/// (async-nats panics on those, and the server passes them through).
fn message(msg: wire::Msg) -> Option<Message> {
    let mut headers = None;
    for (name, value) in msg.headers {
        let name = HeaderName::from_str(&name).ok()?;
        headers.get_or_insert_with(HeaderMap::new).append(name, value);
    }
    Some(Message {
        subject: msg.subject.into(),
        reply: msg.reply.map(Into::into),
        length: msg.payload.len(),
        payload: msg.payload,
        headers,
        status: None,
        description: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// What the client writes before the server has said anything cannot be seen with a real
    /// nats-server (it reads only after its `INFO`), so this listener plays the server's part
    /// of the handshake: it records what arrives before and after its `INFO`.
    async fn handshake(listener: &TcpListener, info: &str) -> (Vec<u8>, Vec<u8>) {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut before = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_millis(300), socket.read(&mut before))
            .await
            .map_or(0, |read| read.unwrap());
        before.truncate(n);
        socket.write_all(info.as_bytes()).await.unwrap();
        let mut after = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_millis(300), socket.read(&mut after))
            .await
            .map_or(0, |read| read.unwrap());
        after.truncate(n);
        (before, after)
    }

    /// One attempt at the listener on `port`: `early` writes before `INFO`, `dial` from the
    /// blocking thread.
    async fn attempt(port: u16, early: bool, dial: bool, seen: &mut Seen) -> Ended {
        let target = move || Some(("127.0.0.1".to_string(), port));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + Duration::from_secs(1);
        let attempt = Attempt {
            host: "127.0.0.1",
            port,
            jwt: "bearer.jwt.here",
            early: early.then_some((addr, dial.then_some(until))),
            renew_at: Instant::now() + Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            target: &target,
        };
        let waiting = Waiting::new(4);
        let stats = CalloutStats::default();
        tokio::time::timeout(Duration::from_secs(5), attempt.run(seen, &waiting, &stats))
            .await
            .expect("the attempt ends when the listener hangs up")
    }

    #[tokio::test]
    async fn the_connect_goes_before_info_only_when_asked_and_only_after_a_plain_info() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let plain = "INFO {\"nonce\":\"n\",\"headers\":true}\r\n";

        // Not early: nothing before INFO, CONNECT + SUB + PING after it.
        let mut seen = Seen::default();
        let (server, ended) =
            tokio::join!(handshake(&listener, plain), attempt(port, false, false, &mut seen));
        let (before, after) = server;
        assert!(before.is_empty(), "{:?}", String::from_utf8_lossy(&before));
        let after = String::from_utf8(after).unwrap();
        assert!(after.starts_with("CONNECT {") && after.contains("\"jwt\":\"bearer.jwt.here\""));
        assert!(after.contains(&format!("SUB {AUTH_SUBJECT} {QUEUE_GROUP} 1\r\nPING\r\n")));
        assert!(!after.contains("\"sig\""), "a bearer JWT signs no nonce");
        assert!(seen.plain_info.is_some() && !seen.wrote_early);
        assert!(matches!(ended, Ended::Failed(_)), "no PONG came: {ended:?}");

        // Early: all of it before the INFO, dialled on the runtime and through the fast dial
        // (a blocking thread) alike.
        for fast in [false, true] {
            let mut seen = Seen::default();
            let (server, _) =
                tokio::join!(handshake(&listener, plain), attempt(port, true, fast, &mut seen));
            let before = String::from_utf8(server.0).unwrap();
            assert!(
                before.starts_with("CONNECT {") && before.ends_with("PING\r\n"),
                "fast {fast}: {before:?}"
            );
            assert!(seen.plain_info.is_some() && seen.wrote_early, "fast {fast}");
        }

        // A server asking for TLS gets nothing from a cautious attempt.
        let tls = "INFO {\"nonce\":\"n\",\"tls_required\":true}\r\n";
        let mut seen = Seen::default();
        let (server, ended) =
            tokio::join!(handshake(&listener, tls), attempt(port, false, false, &mut seen));
        assert!(server.0.is_empty() && server.1.is_empty(), "{server:?}");
        assert!(matches!(ended, Ended::Tls));
        assert!(seen.plain_info.is_none());
    }

    #[test]
    fn early_connects_go_only_where_plain_nats_answered_and_stop_after_three_misses() {
        let here = ("nats.example".to_string(), 4222);
        let there = ("other.example".to_string(), 4222);
        let addr = SocketAddr::from(([10, 0, 0, 1], 4222));
        let plain = Seen { plain_info: Some(addr), wrote_early: false };
        let missed = Seen { plain_info: None, wrote_early: true };
        let refused = Seen::default();
        let mut known = Known::default();
        assert_eq!(known.plain_at(&here), None, "nothing before a plain INFO");
        known.learn(&here, &plain, false);
        assert_eq!(known.plain_at(&here), Some(addr));
        assert_eq!(known.plain_at(&there), None, "only where it was seen");
        // A refused connect wrote nothing; two misses are a server going down.
        known.learn(&here, &refused, false);
        known.learn(&here, &missed, false);
        known.learn(&here, &missed, false);
        assert_eq!(known.plain_at(&here), Some(addr));
        known.learn(&here, &missed, false);
        assert_eq!(known.plain_at(&here), None, "the third miss in a row waits for INFO again");
        known.learn(&here, &plain, false);
        assert_eq!(known.plain_at(&here), Some(addr));
        known.learn(&here, &refused, true);
        assert_eq!(known.plain_at(&here), None);
        assert!(known.wants_tls(&here) && !known.wants_tls(&there));
    }

    #[test]
    fn a_header_name_async_nats_would_panic_on_drops_the_message() {
        let msg = |name: &str| wire::Msg {
            subject: AUTH_SUBJECT.into(),
            sid: 1,
            reply: Some("r".into()),
            headers: vec![(name.to_string(), "v".to_string())],
            payload: bytes::Bytes::from_static(b"x"),
        };
        assert!(message(msg("Nats-Server-Xkey")).is_some());
        assert!(message(msg("Bad Name\u{fc}")).is_none());
    }

    #[test]
    fn the_bearer_jwt_may_subscribe_to_requests_and_publish_nothing() {
        let p = receive_only();
        assert_eq!(p.permissions.publish.deny, vec![">".to_string()]);
        assert!(p.permissions.publish.allow.is_empty());
        // `subject queue`: only in the service's queue group, so a copy cannot take them all.
        assert_eq!(p.permissions.subscribe.allow, vec![format!("{AUTH_SUBJECT} {QUEUE_GROUP}")]);
        assert_eq!(p.limits.subs, 1);
        assert!(p.permissions.response.is_none(), "no reply rights either");
    }
}
