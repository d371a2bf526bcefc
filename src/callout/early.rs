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
//! may only subscribe to `$SYS.REQ.USER.AUTH` and publish nothing, and expires after
//! [`BEARER_TTL`]. The server then sets up the subscription as the first thing it reads from
//! the first connection it accepts, ahead of every client, which each still need a round trip.
//! It only receives: requests go into the same backlog as the client's, and the handlers
//! answer through the client (which queues the answer until it is back, milliseconds later).
//!
//! The `CONNECT` goes out before `INFO` only to an address whose previous `INFO` did not ask
//! for TLS, so that the JWT is never sent in clear to a server that expects TLS.
//!
//! It follows the client's server ([`Dialer::target`]), retries every
//! [`FAST_RETRY_DELAY`] for [`FAST_RETRY_WINDOW`] after losing it and then every
//! [`SOLE_SERVER_RETRY`], and stays off where TLS is configured or asked for by the server.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Message};
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
    // The address whose last `INFO` said plain TCP: there, `CONNECT` goes before `INFO`.
    let mut plain: Option<(String, u16)> = None;
    loop {
        let delay = if !dialer.target_is_plain() {
            OFF_DELAY
        } else {
            let (host, port) = dialer.target();
            let early = plain.as_ref() == Some(&(host.clone(), port));
            let ended = match bearer.jwt(&dialer) {
                Err(e) => {
                    // Not expected (the client's own JWT came from the same key); try later.
                    tracing::warn!(error = %e, "cannot sign the early callout subscription's JWT");
                    Ended::Failed(e.to_string())
                }
                Ok(jwt) => tokio::select! {
                    () = stop.cancelled() => return,
                    ended = session(&dialer, &host, port, jwt, early, &waiting, &stats) => ended,
                },
            };
            plain = match &ended {
                Ended::Tls => None,
                Ended::Lost | Ended::Refused(_) => Some((host.clone(), port)),
                Ended::Failed(_) => plain,
            };
            match ended {
                Ended::Lost => {
                    tracing::debug!(%host, port, "early callout subscription lost; retrying");
                    lost_at = Instant::now();
                    last_complaint.clear();
                    FAST_RETRY_DELAY
                }
                Ended::Failed(_) if lost_at.elapsed() < FAST_RETRY_WINDOW => FAST_RETRY_DELAY,
                Ended::Failed(cause) => {
                    tracing::debug!(%host, port, %cause, "early callout subscription: no server");
                    SOLE_SERVER_RETRY
                }
                Ended::Refused(cause) => {
                    if cause != last_complaint {
                        tracing::warn!(%host, port, %cause, "the server refused the early callout subscription");
                        last_complaint = cause;
                    }
                    REFUSED_DELAY
                }
                Ended::Tls => {
                    if last_complaint != "tls" {
                        tracing::info!(%host, port, "the server asks for TLS: no early callout subscription there");
                        last_complaint = "tls".into();
                    }
                    OFF_DELAY
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// What the bearer JWT allows: subscribing to authorization requests, nothing else.
fn receive_only() -> UserPermissionLimits {
    UserPermissionLimits {
        permissions: crate::claims::Permissions {
            publish: Permission { allow: vec![], deny: vec![">".into()] },
            subscribe: Permission { allow: vec![AUTH_SUBJECT.into()], deny: vec![] },
            response: None,
        },
        ..UserPermissionLimits::default()
    }
}

/// The bearer JWT, minted again when half its life is gone.
#[derive(Default)]
struct Bearer(Option<(String, UnixTime)>);

impl Bearer {
    fn jwt(&mut self, dialer: &Dialer) -> Result<&str, crate::trust::TrustError> {
        let now = model::now();
        let ttl = BEARER_TTL.as_secs() as i64;
        if self.0.as_ref().is_none_or(|(_, expires)| expires - now < ttl / 2) {
            let expires = now + ttl;
            self.0 = Some((dialer.bearer_jwt(receive_only(), expires)?, expires));
        }
        Ok(&self.0.as_ref().expect("just minted").0)
    }
}

/// One connection, from connect to its end. `early`: write the `CONNECT` before reading the
/// server's `INFO`.
async fn session(
    dialer: &Dialer,
    host: &str,
    port: u16,
    jwt: &str,
    early: bool,
    waiting: &Waiting<(Message, Instant)>,
    stats: &CalloutStats,
) -> Ended {
    let failed = |e: &dyn std::fmt::Display| Ended::Failed(e.to_string());
    let stream = match tokio::time::timeout(
        dialer.connect_timeout(),
        TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return failed(&e),
        Err(_) => return failed(&"connect timed out"),
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let hello = wire::connect_and_subscribe(
        &Connect::new(jwt, None, "nats-authd callout"),
        AUTH_SUBJECT,
        QUEUE_GROUP,
        SID,
    );
    if early {
        if let Err(e) = writer.write_all(&hello).await {
            return failed(&e);
        }
    }

    let greeting = tokio::time::timeout(dialer.connect_timeout(), async {
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
    if !early {
        if let Err(e) = writer.write_all(&hello).await {
            return failed(&e);
        }
    }

    let mut up = false;
    let mut awaiting_pong = true;
    let mut keepalive = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        loop {
            let op = match wire::parse(&mut buf) {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(e) => return protocol_error(up, &e),
            };
            match op {
                ServerOp::Msg(msg) => {
                    if waiting.push((message(msg), Instant::now())) {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
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
                if writer.write_all(b"PING\r\n").await.is_err() {
                    return Ended::Lost;
                }
                awaiting_pong = true;
            }
        }
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

/// The message as async-nats would have delivered it.
fn message(msg: wire::Msg) -> Message {
    let headers = (!msg.headers.is_empty()).then(|| {
        let mut map = HeaderMap::new();
        for (name, value) in msg.headers {
            map.append(name, value);
        }
        map
    });
    Message {
        subject: msg.subject.into(),
        reply: msg.reply.map(Into::into),
        length: msg.payload.len(),
        payload: msg.payload,
        headers,
        status: None,
        description: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_jwt_may_subscribe_to_requests_and_publish_nothing() {
        let p = receive_only();
        assert_eq!(p.permissions.publish.deny, vec![">".to_string()]);
        assert!(p.permissions.publish.allow.is_empty());
        assert_eq!(p.permissions.subscribe.allow, vec![AUTH_SUBJECT.to_string()]);
        assert!(p.permissions.response.is_none(), "no reply rights either");
    }
}
