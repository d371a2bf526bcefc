//! Renders the nats-server configuration from the template in `nats-config/`.

use std::path::{Path, PathBuf};

/// The template, documented setting by setting.
pub const TEMPLATE: &str = include_str!("../nats-config/nats-server.conf");

/// Where and as what the local nats-server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Interface for clients and monitoring.
    pub host: String,
    /// Client port.
    pub port: u16,
    /// HTTP monitoring port.
    pub http_port: u16,
    /// `server_name`.
    pub server_name: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: "127.0.0.1".into(),
            port: 4222,
            http_port: 8222,
            server_name: "authd-local".into(),
        }
    }
}

impl ServerSettings {
    /// `host:port` of the client listener, bracketing an IPv6 host.
    pub fn listen_addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// The client URL of this server.
    pub fn client_url(&self) -> String {
        format!("nats://{}", self.listen_addr())
    }

    /// The client URL of this server when it requires TLS: `tls://`, so that a client insists
    /// on TLS instead of following whatever the server's INFO says.
    pub fn tls_url(&self) -> String {
        format!("tls://{}", self.listen_addr())
    }
}

/// TLS for client connections, as `init --server-tls-*` writes it into the generated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The server's certificate (PEM), its chain after it.
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM).
    pub key_file: PathBuf,
    /// CA that client certificates must chain to (with `verify`).
    pub ca_file: Option<PathBuf>,
    /// Require a client certificate from every client (mTLS), nats-authd's own included.
    pub verify: bool,
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Everything the template needs besides [`ServerSettings`].
#[derive(Debug, Clone)]
pub struct ConfigInputs<'a> {
    pub settings: &'a ServerSettings,
    pub operator_jwt_file: &'a Path,
    pub system_account: &'a str,
    pub resolver_dir: &'a Path,
    /// (account public key, account JWT) pairs to preload.
    pub preload: &'a [(String, String)],
    /// The bearer, deny-all sentinel user JWT for connections without a JWT
    /// (`default_sentinel`): what lets clients log in with only user/password or a token.
    pub default_sentinel: &'a str,
    /// The client TLS block, with absolute paths; `None` leaves TLS to `local.conf`.
    pub tls: Option<&'a ServerTls>,
}

/// Fills in the template. Values are quoted, so paths with spaces work.
pub fn render(inputs: &ConfigInputs<'_>) -> String {
    let preload = inputs
        .preload
        .iter()
        .map(|(key, jwt)| format!("  {key}: \"{jwt}\""))
        .collect::<Vec<_>>()
        .join("\n");
    let s = inputs.settings;
    [
        ("{{server_name}}", quote_safe(&s.server_name)),
        ("{{listen}}", quote_safe(&s.listen_addr())),
        ("{{http}}", quote_safe(&join_host_port(&s.host, s.http_port))),
        ("{{operator_jwt}}", quote_safe(&inputs.operator_jwt_file.display().to_string())),
        ("{{system_account}}", inputs.system_account.to_string()),
        ("{{resolver_dir}}", quote_safe(&inputs.resolver_dir.display().to_string())),
        ("{{preload}}", preload),
        ("{{default_sentinel}}", quote_safe(inputs.default_sentinel)),
        ("{{tls}}", inputs.tls.map_or_else(|| NO_TLS.to_string(), tls_block)),
    ]
    .iter()
    .fold(TEMPLATE.to_string(), |text, (placeholder, value)| text.replace(placeholder, value))
}

/// What stands where the TLS block would be when no `--server-tls-*` flag was given.
const NO_TLS: &str = "# (no --server-tls-cert given: no tls block here)";

/// The `tls { }` block for client connections.
fn tls_block(tls: &ServerTls) -> String {
    let path = |p: &Path| quote_safe(&p.display().to_string());
    let mut lines = vec![
        "tls {".to_string(),
        format!("  cert_file: \"{}\"", path(&tls.cert_file)),
        format!("  key_file: \"{}\"", path(&tls.key_file)),
    ];
    if let Some(ca) = &tls.ca_file {
        lines.push(format!("  ca_file: \"{}\"", path(ca)));
    }
    lines.push(format!("  verify: {}", tls.verify));
    lines.push("}".to_string());
    lines.join("\n")
}

/// Whether a nats-server config text sets `tls` at its top level (not inside `cluster`,
/// `websocket`, `leafnodes`, ...). nats-server takes the last top-level `tls` block whole,
/// so one in `local.conf` would silently replace the generated one: `init` refuses the pair.
/// Files that `local.conf` itself includes are not looked into.
pub fn has_top_level_tls(text: &str) -> bool {
    has_top_level_key(text, "tls")
}

/// Whether a config text sets `key` (any case) at its top level, outside comments, strings
/// and nested blocks.
fn has_top_level_key(text: &str, key: &str) -> bool {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // A key can start only at the beginning of a line or after a separator.
    let mut key_may_start = true;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                let start = i + 1;
                i = start;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let quoted = &text[start..i.min(text.len())];
                if depth == 0 && key_may_start && quoted.eq_ignore_ascii_case(key) {
                    return true;
                }
                key_may_start = false;
                i += 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                key_may_start = true;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                key_may_start = false;
            }
            b'\n' | b',' | b';' => key_may_start = true,
            c if c.is_ascii_whitespace() => {}
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"_-$.".contains(&bytes[i]))
                {
                    i += 1;
                }
                if depth == 0 && key_may_start && text[start..i].eq_ignore_ascii_case(key) {
                    return true;
                }
                key_may_start = false;
                continue;
            }
            _ => key_may_start = false,
        }
        i += 1;
    }
    false
}

/// A `jetstream` block storing in `store_dir`, for `local.conf` (JetStream mode).
pub fn jetstream_block(store_dir: &Path) -> String {
    format!(
        "\n# nats-authd keeps its records in a JetStream stream of the AUTH account (init --store\n\
         # jetstream). Every server of a cluster needs JetStream on, each with its own store_dir.\n\
         jetstream {{\n  store_dir: \"{}\"\n}}\n",
        quote_safe(&store_dir.display().to_string())
    )
}

/// Whether a config text turns JetStream on (a top-level `jetstream` setting).
pub fn has_jetstream_block(text: &str) -> bool {
    has_top_level_key(text, "jetstream")
}

/// Escapes what would end or break a double-quoted config string.
fn quote_safe(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let settings = ServerSettings::default();
        let preload = [("AKEY".to_string(), "eyJ.x.y".to_string())];
        let text = render(&ConfigInputs {
            settings: &settings,
            operator_jwt_file: Path::new("/tmp/a dir/operator.jwt"),
            system_account: "ASYS",
            resolver_dir: Path::new("/tmp/a dir/jwt"),
            preload: &preload,
            default_sentinel: "eyJ.s.t",
            tls: None,
        });
        assert!(!text.contains("{{"), "unfilled placeholder in:\n{text}");
        assert!(!has_top_level_tls(&text), "no tls block without the flags");
        assert!(text.contains("default_sentinel: \"eyJ.s.t\""));
        assert!(text.contains("listen: \"127.0.0.1:4222\""));
        assert!(text.contains("operator: \"/tmp/a dir/operator.jwt\""));
        assert!(text.contains("  AKEY: \"eyJ.x.y\""));
        assert_eq!(settings.client_url(), "nats://127.0.0.1:4222");
    }

    #[test]
    fn the_tls_block_names_its_files_and_verify() {
        let tls = ServerTls {
            cert_file: "/c/server.pem".into(),
            key_file: "/c/server-key.pem".into(),
            ca_file: Some("/c/ca.pem".into()),
            verify: true,
        };
        let settings = ServerSettings::default();
        let text = render(&ConfigInputs {
            settings: &settings,
            operator_jwt_file: Path::new("/o.jwt"),
            system_account: "ASYS",
            resolver_dir: Path::new("/jwt"),
            preload: &[],
            default_sentinel: "eyJ.s.t",
            tls: Some(&tls),
        });
        assert!(text.contains("tls {\n  cert_file: \"/c/server.pem\"\n  key_file: \"/c/server-key.pem\"\n  ca_file: \"/c/ca.pem\"\n  verify: true\n}"), "{text}");
        assert!(has_top_level_tls(&text));
        assert_eq!(settings.tls_url(), "tls://127.0.0.1:4222");
    }

    #[test]
    fn only_a_top_level_tls_key_counts() {
        for text in [
            "tls { cert_file: a }",
            "TLS: { cert_file: a }",
            "max_connections: 5\ntls = {}",
            "  \"tls\" {}",
            "a: 1; tls {}",
        ] {
            assert!(has_top_level_tls(text), "{text:?}");
        }
        for text in [
            "",
            "# tls { cert_file: a }",
            "// tls {}",
            "cluster { name: c, tls { cert_file: a } }",
            "websocket {\n  port: 8080\n  tls {\n cert_file: a\n }\n}",
            "leafnodes { remotes: [ { url: x, tls: {} } ] }",
            "server_name: tls",
            "server_name: \"tls\"",
            "tls_timeout_thing: 1",
        ] {
            assert!(!has_top_level_tls(text), "{text:?}");
        }
    }

    #[test]
    fn jetstream_blocks_are_found_outside_comments() {
        let block = jetstream_block(Path::new("/tmp/a \"dir\"/js"));
        assert!(block.contains("store_dir: \"/tmp/a \\\"dir\\\"/js\""), "{block}");
        assert!(has_jetstream_block(&block));
        assert!(!has_jetstream_block("# jetstream { store_dir: x }\n"));
        assert!(has_jetstream_block("  jetstream: enabled\n"));
    }
}
