//! Renders the nats-server configuration from the template in `nats-config/`.

use std::path::Path;

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
    ]
    .iter()
    .fold(TEMPLATE.to_string(), |text, (placeholder, value)| text.replace(placeholder, value))
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

/// Whether a config text turns JetStream on (a `jetstream` setting outside comments).
pub fn has_jetstream_block(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        !line.starts_with('#')
            && !line.starts_with("//")
            && line.to_lowercase().starts_with("jetstream")
    })
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
        });
        assert!(!text.contains("{{"), "unfilled placeholder in:\n{text}");
        assert!(text.contains("default_sentinel: \"eyJ.s.t\""));
        assert!(text.contains("listen: \"127.0.0.1:4222\""));
        assert!(text.contains("operator: \"/tmp/a dir/operator.jwt\""));
        assert!(text.contains("  AKEY: \"eyJ.x.y\""));
        assert_eq!(settings.client_url(), "nats://127.0.0.1:4222");
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
