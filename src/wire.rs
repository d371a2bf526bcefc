//! The few parts of the NATS client protocol that the callout's early subscription speaks
//! itself (see `callout::early`): reading `INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK` and
//! `-ERR` from a byte buffer, and writing `CONNECT`, `SUB`, `PING` and `PONG`.
//!
//! async-nats keeps its protocol parser private and writes subscriptions only after the
//! server's `PONG`; the one thing this module exists for is a `SUB` in the same write as the
//! `CONNECT`. Everything else the service sends goes through async-nats.

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Longest control line accepted (the server's own default limit is 4 KiB; `INFO` can be
/// longer with many `connect_urls`).
pub const MAX_CONTROL_LINE: usize = 64 * 1024;
/// Largest message accepted; anything larger ends the connection.
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// The fields of the server's `INFO` this client uses.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Info {
    /// Signed by the client to prove it holds the user's key.
    #[serde(default)]
    pub nonce: String,
    /// The server expects TLS (which this client does not speak).
    #[serde(default)]
    pub tls_required: bool,
    /// The server speaks headers (`HMSG`).
    #[serde(default)]
    pub headers: bool,
}

/// One operation sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    Info(Info),
    Msg(Msg),
    Ping,
    Pong,
    Ok,
    /// `-ERR` with the server's text.
    Err(String),
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub subject: String,
    pub sid: u64,
    pub reply: Option<String>,
    /// Header lines after the `NATS/1.0` line, in order.
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// The stream cannot be read as NATS protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("control line longer than {MAX_CONTROL_LINE} bytes")]
    LineTooLong,
    #[error("message of {0} bytes is larger than {MAX_MESSAGE}")]
    TooLarge(usize),
    #[error("malformed protocol line {0:?}")]
    Malformed(String),
}

/// Takes one complete operation off the front of `buf`, or `None` until more bytes arrive.
///
/// # Errors
/// A line that is not NATS protocol, too long, or announcing a message over [`MAX_MESSAGE`].
pub fn parse(buf: &mut BytesMut) -> Result<Option<ServerOp>, WireError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_CONTROL_LINE { Err(WireError::LineTooLong) } else { Ok(None) };
    };
    let line = std::str::from_utf8(&buf[..end])
        .map_err(|_| WireError::Malformed(String::from_utf8_lossy(&buf[..end]).into_owned()))?;
    let malformed = || WireError::Malformed(line.to_string());
    let (op, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let rest = rest.trim_start();
    let op = op.to_ascii_uppercase();
    let simple = match op.as_str() {
        "PING" => Some(ServerOp::Ping),
        "PONG" => Some(ServerOp::Pong),
        "+OK" => Some(ServerOp::Ok),
        "-ERR" => Some(ServerOp::Err(rest.trim_matches('\'').to_string())),
        "INFO" => Some(ServerOp::Info(serde_json::from_str(rest).map_err(|_| malformed())?)),
        "MSG" | "HMSG" => None,
        _ => return Err(malformed()),
    };
    if let Some(op) = simple {
        buf.advance(end + 2);
        return Ok(Some(op));
    }
    // MSG <subject> <sid> [reply] <size> / HMSG <subject> <sid> [reply] <hdr size> <size>
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    let with_headers = op == "HMSG";
    let sizes = if with_headers { 2 } else { 1 };
    if args.len() != 2 + sizes && args.len() != 3 + sizes {
        return Err(malformed());
    }
    let number = |s: &str| s.parse::<usize>().map_err(|_| malformed());
    let total = number(args[args.len() - 1])?;
    let header_len = if with_headers { number(args[args.len() - 2])? } else { 0 };
    if total > MAX_MESSAGE {
        return Err(WireError::TooLarge(total));
    }
    if header_len > total {
        return Err(malformed());
    }
    let sid = args[1].parse::<u64>().map_err(|_| malformed())?;
    let reply = (args.len() == 3 + sizes).then(|| args[2].to_string());
    let subject = args[0].to_string();
    let frame = end + 2 + total + 2;
    if buf.len() < frame {
        buf.reserve(frame - buf.len());
        return Ok(None);
    }
    if &buf[frame - 2..frame] != b"\r\n" {
        return Err(malformed());
    }
    buf.advance(end + 2);
    let mut body = buf.split_to(total + 2).freeze();
    body.truncate(total);
    let payload = body.split_off(header_len);
    let headers = if with_headers {
        parse_headers(&body).ok_or_else(|| WireError::Malformed("bad header block".into()))?
    } else {
        vec![]
    };
    Ok(Some(ServerOp::Msg(Msg { subject, sid, reply, headers, payload })))
}

/// `NATS/1.0[ status]\r\nName: value\r\n...\r\n\r\n` to its name/value lines.
fn parse_headers(block: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(block).ok()?;
    let mut lines = text.split("\r\n");
    if !lines.next()?.starts_with("NATS/1.0") {
        return None;
    }
    Some(
        lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// The `CONNECT` of a user authenticating with a JWT (its `Debug` leaves the JWT out).
#[derive(Serialize)]
pub struct Connect<'a> {
    pub jwt: &'a str,
    /// base64url (no padding) of the nonce's ed25519 signature; none for a bearer JWT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<&'a str>,
    pub name: &'a str,
    /// Never receive our own messages (this connection publishes nothing anyway).
    pub echo: bool,
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    pub lang: &'a str,
    pub version: &'a str,
    pub protocol: u8,
    pub headers: bool,
    /// Off: the connection makes no requests (and with it on, a server without headers
    /// refuses the connection).
    pub no_responders: bool,
}

impl std::fmt::Debug for Connect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<'a> Connect<'a> {
    /// A quiet (non-verbose) CONNECT with headers, as `name`.
    pub fn new(jwt: &'a str, sig: Option<&'a str>, name: &'a str) -> Self {
        Connect {
            jwt,
            sig,
            name,
            echo: false,
            verbose: false,
            pedantic: false,
            tls_required: false,
            lang: "rust",
            version: env!("CARGO_PKG_VERSION"),
            protocol: 1,
            headers: true,
            no_responders: false,
        }
    }
}

/// `CONNECT`, `SUB subject queue sid` and `PING` as one buffer: the server applies the
/// subscription as soon as it has accepted the connection, before it reads anything else
/// (and, with a bearer JWT, without waiting for a round trip: it can be written before the
/// server's `INFO` arrives).
pub fn connect_and_subscribe(
    connect: &Connect<'_>,
    subject: &str,
    queue: &str,
    sid: u64,
) -> Vec<u8> {
    let json = serde_json::to_string(connect).expect("CONNECT serializes");
    format!("CONNECT {json}\r\nSUB {subject} {queue} {sid}\r\nPING\r\n").into_bytes()
}

/// The answer to a server `PING`.
pub const PONG: &[u8] = b"PONG\r\n";
/// A keep-alive of our own.
pub const PING: &[u8] = b"PING\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> (Vec<ServerOp>, BytesMut) {
        let mut buf = BytesMut::from(input);
        let mut ops = vec![];
        while let Some(op) = parse(&mut buf).unwrap() {
            ops.push(op);
        }
        (ops, buf)
    }

    #[test]
    fn simple_operations_parse_in_any_case() {
        let (ops, rest) = all(b"PING\r\npong\r\n+OK\r\n-ERR 'Authorization Violation'\r\nPI");
        assert_eq!(
            ops,
            vec![
                ServerOp::Ping,
                ServerOp::Pong,
                ServerOp::Ok,
                ServerOp::Err("Authorization Violation".into())
            ]
        );
        assert_eq!(&rest[..], b"PI", "an incomplete line waits for more bytes");
    }

    #[test]
    fn info_keeps_the_nonce_and_ignores_the_rest() {
        let (ops, _) = all(
            b"INFO {\"server_id\":\"N\",\"nonce\":\"abc\",\"headers\":true,\"max_payload\":1}\r\n",
        );
        assert_eq!(
            ops,
            vec![ServerOp::Info(Info { nonce: "abc".into(), tls_required: false, headers: true })]
        );
    }

    #[test]
    fn msg_with_and_without_reply() {
        let (ops, rest) = all(b"MSG a.b 7 5\r\nhello\r\nMSG a.b 7 _INBOX.x 0\r\n\r\n");
        assert!(rest.is_empty());
        let ServerOp::Msg(first) = &ops[0] else { panic!("{ops:?}") };
        assert_eq!((first.subject.as_str(), first.sid, first.reply.as_deref()), ("a.b", 7, None));
        assert_eq!(&first.payload[..], b"hello");
        let ServerOp::Msg(second) = &ops[1] else { panic!("{ops:?}") };
        assert_eq!(second.reply.as_deref(), Some("_INBOX.x"));
        assert!(second.payload.is_empty());
    }

    #[test]
    fn hmsg_splits_headers_from_payload() {
        let headers = "NATS/1.0\r\nNats-Server-Xkey: XABC\r\n\r\n";
        let frame = format!(
            "HMSG $SYS.REQ.USER.AUTH 1 $SYS._INBOX.r {} {}\r\n{headers}body\r\n",
            headers.len(),
            headers.len() + 4
        );
        let (ops, rest) = all(frame.as_bytes());
        assert!(rest.is_empty());
        let ServerOp::Msg(msg) = &ops[0] else { panic!("{ops:?}") };
        assert_eq!(msg.headers, vec![("Nats-Server-Xkey".to_string(), "XABC".to_string())]);
        assert_eq!(&msg.payload[..], b"body");
        assert_eq!(msg.reply.as_deref(), Some("$SYS._INBOX.r"));
    }

    #[test]
    fn a_message_split_across_reads_waits_for_its_payload() {
        let frame = b"MSG s 1 r 10\r\n0123456789\r\nPING\r\n";
        for cut in 1..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            let mut ops = vec![];
            while let Some(op) = parse(&mut buf).unwrap() {
                ops.push(op);
            }
            buf.extend_from_slice(&frame[cut..]);
            while let Some(op) = parse(&mut buf).unwrap() {
                ops.push(op);
            }
            assert_eq!(ops.len(), 2, "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn garbage_oversized_and_lying_frames_are_errors() {
        for bad in [
            &b"HELLO\r\n"[..],
            b"MSG s\r\n",
            b"MSG s x 1\r\na\r\n",
            b"MSG s 1 abc\r\n",
            b"HMSG s 1 9 3\r\nabc\r\n",
            b"MSG s 1 3\r\nabcd\r\n",
            b"HMSG s 1 3 3\r\nabc\r\n",
            b"INFO {not json\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parse(&mut buf).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut huge = BytesMut::from(format!("MSG s 1 {}\r\n", MAX_MESSAGE + 1).as_bytes());
        assert_eq!(parse(&mut huge), Err(WireError::TooLarge(MAX_MESSAGE + 1)));
        let mut endless = BytesMut::from(&vec![b'A'; MAX_CONTROL_LINE + 1][..]);
        assert_eq!(parse(&mut endless), Err(WireError::LineTooLong));
    }

    #[test]
    fn connect_sub_and_ping_go_in_one_buffer_in_that_order() {
        let bytes = connect_and_subscribe(
            &Connect::new("eyJ", Some("c2ln"), "nats-authd"),
            "$SYS.REQ.USER.AUTH",
            "q",
            1,
        );
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 3);
        let json: serde_json::Value =
            serde_json::from_str(lines[0].strip_prefix("CONNECT ").unwrap()).unwrap();
        assert_eq!(json["jwt"], "eyJ");
        assert_eq!(json["sig"], "c2ln");
        assert_eq!(json["verbose"], false);
        assert_eq!(json["headers"], true);
        assert_eq!(lines[1], "SUB $SYS.REQ.USER.AUTH q 1");
        assert_eq!(lines[2], "PING");
        let bearer = connect_and_subscribe(&Connect::new("eyJ", None, "n"), "s", "q", 1);
        assert!(!String::from_utf8(bearer).unwrap().contains("sig"), "no sig for a bearer JWT");
    }
}
