//! Client subcommands: each turns its arguments into one management request.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

/// Where the API is and who asks.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// NATS server URL.
    #[arg(
        long = "nats-url",
        env = "NATS_AUTHD_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,
    /// Admin creds file.
    #[arg(long, env = "NATS_AUTHD_CREDS", default_value = "authd/admin.creds", global = true)]
    pub creds: PathBuf,
    /// Print the raw JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10.0, global = true)]
    pub timeout: f64,
}

/// `account ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AccountCmd {
    /// Create a tenant account.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Limits as JSON, e.g. '{"connections":100,"mem_storage":1048576}' (-1: unlimited).
        #[arg(long, value_name = "JSON")]
        limits: Option<String>,
        /// Exports as JSON, e.g. '[{"subject":"orders.>","type":"service"}]'.
        #[arg(long, value_name = "JSON")]
        exports: Option<String>,
        /// Imports as JSON, e.g. '[{"account":"acme","subject":"orders.>","type":"service"}]'.
        #[arg(long, value_name = "JSON")]
        imports: Option<String>,
    },
    /// Show one account.
    Get { name: String },
    /// List every account.
    List,
    /// Change an account; only the given fields change.
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// false stops its users connecting; true lets them back.
        #[arg(long)]
        active: Option<bool>,
        #[arg(long, value_name = "JSON")]
        limits: Option<String>,
        #[arg(long, value_name = "JSON")]
        exports: Option<String>,
        #[arg(long, value_name = "JSON")]
        imports: Option<String>,
        /// Role for users created without one ("" clears it).
        #[arg(long)]
        default_role: Option<String>,
    },
    /// Delete an account and remove it from the servers.
    Delete {
        name: String,
        /// Also delete its users and roles.
        #[arg(long)]
        cascade: bool,
    },
}

/// `user ...`
#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// Create a user with a fresh nkey.
    Create {
        account: String,
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Read a password (for callout logins) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Lifetime of the user's JWTs in seconds.
        #[arg(long, value_name = "SECS")]
        ttl: Option<i64>,
        /// Issue bearer JWTs.
        #[arg(long)]
        bearer: bool,
        /// A tag for role templates, `key=value` (repeat).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tag)]
        tags: Vec<(String, String)>,
    },
    /// Show one user.
    Get { account: String, name: String },
    /// List an account's users.
    List { account: String },
    /// Change a user; only the given fields change.
    Update {
        account: String,
        name: String,
        /// New role ("" falls back to the account default).
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// false revokes it (live creds connections are cut); true restores it.
        #[arg(long)]
        active: Option<bool>,
        /// Read a new password from the first line of stdin.
        #[arg(long, conflicts_with = "clear_password")]
        password_stdin: bool,
        /// Remove the password.
        #[arg(long)]
        clear_password: bool,
        /// New JWT lifetime in seconds (0: no expiry).
        #[arg(long, value_name = "SECS")]
        ttl: Option<i64>,
        #[arg(long)]
        bearer: Option<bool>,
        /// Replace the tags, `key=value` (repeat).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tag)]
        tags: Vec<(String, String)>,
    },
    /// Delete a user and revoke its key.
    Delete { account: String, name: String },
    /// Give a user a new nkey (the old one is revoked) and print its new creds.
    Regenerate {
        account: String,
        name: String,
        /// Write the creds to this file (mode 0600) instead of stdout; an existing file is
        /// refused unless --force is given.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file (the new file is mode 0600 whatever the old one was).
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Print a user's creds file.
    Creds {
        account: String,
        name: String,
        /// Write the creds to this file (mode 0600) instead of stdout; an existing file is
        /// refused unless --force is given.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file (the new file is mode 0600 whatever the old one was).
        #[arg(long, requires = "out")]
        force: bool,
    },
}

/// Permission and limit flags shared by `role create` and `role update`.
#[derive(Debug, Clone, Default, Args)]
pub struct RoleFields {
    #[arg(long)]
    pub description: Option<String>,
    /// Subject the role may publish to (repeat).
    #[arg(long = "pub-allow", value_name = "SUBJECT")]
    pub pub_allow: Vec<String>,
    /// Subject the role may not publish to (repeat).
    #[arg(long = "pub-deny", value_name = "SUBJECT")]
    pub pub_deny: Vec<String>,
    /// Subject the role may subscribe to (repeat).
    #[arg(long = "sub-allow", value_name = "SUBJECT")]
    pub sub_allow: Vec<String>,
    /// Subject the role may not subscribe to (repeat).
    #[arg(long = "sub-deny", value_name = "SUBJECT")]
    pub sub_deny: Vec<String>,
    /// Replies allowed per received request (0 removes the permission).
    #[arg(long)]
    pub resp_max: Option<i64>,
    /// How long the reply permission lasts, in milliseconds.
    #[arg(long)]
    pub resp_ttl_ms: Option<i64>,
    /// Per-user subscription limit (-1: unlimited).
    #[arg(long)]
    pub subs: Option<i64>,
    /// Per-user data limit in bytes (-1: unlimited).
    #[arg(long)]
    pub data: Option<i64>,
    /// Per-user payload limit in bytes (-1: unlimited).
    #[arg(long)]
    pub payload: Option<i64>,
}

/// `role ...`
#[derive(Debug, Clone, Subcommand)]
pub enum RoleCmd {
    /// Create a role.
    Create {
        account: String,
        name: String,
        #[command(flatten)]
        fields: RoleFields,
        /// Make it the account's default role.
        #[arg(long)]
        default: bool,
    },
    /// Show one role.
    Get { account: String, name: String },
    /// List an account's roles.
    List { account: String },
    /// Change a role; given lists replace the stored ones.
    Update {
        account: String,
        name: String,
        #[command(flatten)]
        fields: RoleFields,
        #[arg(long)]
        default: Option<bool>,
    },
    /// Delete a role no user holds.
    Delete { account: String, name: String },
}

/// `token ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Make an API token for a user (printed once; only its hash is kept).
    Create {
        account: String,
        user: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List an account's tokens (never their secrets).
    List {
        account: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token; connections made with it are ended.
    Revoke { id: String },
}

impl TokenCmd {
    /// The request.
    pub fn call(&self) -> Call {
        match self {
            TokenCmd::Create { account, user, description } => {
                let mut body = Map::new();
                body.insert("account".into(), json!(account));
                body.insert("user".into(), json!(user));
                put(&mut body, "description", description.as_ref().map(|d| json!(d)));
                call("token.create", Value::Object(body))
            }
            TokenCmd::List { account, user } => {
                let mut body = Map::new();
                body.insert("account".into(), json!(account));
                put(&mut body, "user", user.as_ref().map(|u| json!(u)));
                call("token.list", Value::Object(body))
            }
            TokenCmd::Revoke { id } => call("token.revoke", json!({ "id": id })),
        }
    }
}

/// Parses `key=value`.
fn tag(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

fn tags(list: &[(String, String)]) -> Option<Value> {
    (!list.is_empty())
        .then(|| Value::Object(list.iter().map(|(k, v)| (k.clone(), json!(v))).collect()))
}

/// `pending ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PendingCmd {
    /// List queued and failed account pushes.
    List,
    /// Re-queue failed pushes (all, or one account's).
    Retry { account: Option<String> },
}

/// A management command, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Endpoint below the prefix, e.g. `account.create`.
    pub endpoint: &'static str,
    pub body: Value,
    /// Where to write a creds answer.
    pub out: Option<OutFile>,
}

/// A file to write a creds answer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    pub path: PathBuf,
    /// Replace the file if it exists (`--force`); otherwise an existing file is refused.
    pub replace: bool,
}

fn out_file(path: &Option<PathBuf>, force: bool) -> Option<OutFile> {
    path.clone().map(|path| OutFile { path, replace: force })
}

fn call(endpoint: &'static str, body: Value) -> Call {
    Call { endpoint, body, out: None }
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

fn json_arg(flag: &str, text: &Option<String>) -> Result<Option<Value>> {
    text.as_deref()
        .map(|t| serde_json::from_str(t).with_context(|| format!("--{flag} is not valid JSON")))
        .transpose()
}

/// Reads a password from the first line of `input`.
pub fn read_password(input: &mut dyn std::io::BufRead) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password on stdin");
    }
    Ok(password)
}

impl AccountCmd {
    /// The request.
    ///
    /// # Errors
    /// A JSON flag that does not parse.
    pub fn call(&self) -> Result<Call> {
        Ok(match self {
            AccountCmd::Create { name, description, limits, exports, imports } => {
                let mut body = Map::new();
                body.insert("name".into(), json!(name));
                put(&mut body, "description", description.as_ref().map(|d| json!(d)));
                put(&mut body, "limits", json_arg("limits", limits)?);
                put(&mut body, "exports", json_arg("exports", exports)?);
                put(&mut body, "imports", json_arg("imports", imports)?);
                call("account.create", Value::Object(body))
            }
            AccountCmd::Get { name } => call("account.get", json!({ "name": name })),
            AccountCmd::List => call("account.list", json!({})),
            AccountCmd::Update {
                name,
                description,
                active,
                limits,
                exports,
                imports,
                default_role,
            } => {
                let mut body = Map::new();
                body.insert("name".into(), json!(name));
                put(&mut body, "description", description.as_ref().map(|d| json!(d)));
                put(&mut body, "active", active.map(|a| json!(a)));
                put(&mut body, "limits", json_arg("limits", limits)?);
                put(&mut body, "exports", json_arg("exports", exports)?);
                put(&mut body, "imports", json_arg("imports", imports)?);
                put(&mut body, "default_role", default_role.as_ref().map(|r| json!(r)));
                call("account.update", Value::Object(body))
            }
            AccountCmd::Delete { name, cascade } => {
                call("account.delete", json!({ "name": name, "cascade": cascade }))
            }
        })
    }
}

impl UserCmd {
    /// The request; `password` is read only by the commands that take `--password-stdin`.
    ///
    /// # Errors
    /// No password on stdin when one was asked for.
    pub fn call(&self, password: &mut dyn FnMut() -> Result<String>) -> Result<Call> {
        Ok(match self {
            UserCmd::Create {
                account,
                name,
                role,
                description,
                password_stdin,
                ttl,
                bearer,
                tags: tag_list,
            } => {
                let mut body = Map::new();
                body.insert("account".into(), json!(account));
                body.insert("name".into(), json!(name));
                put(&mut body, "role", role.as_ref().map(|r| json!(r)));
                put(&mut body, "description", description.as_ref().map(|d| json!(d)));
                put(&mut body, "jwt_ttl_secs", ttl.map(|t| json!(t)));
                if *bearer {
                    body.insert("bearer_token".into(), json!(true));
                }
                put(&mut body, "tags", tags(tag_list));
                if *password_stdin {
                    body.insert("password".into(), json!(password()?));
                }
                call("user.create", Value::Object(body))
            }
            UserCmd::Get { account, name } => {
                call("user.get", json!({ "account": account, "name": name }))
            }
            UserCmd::List { account } => call("user.list", json!({ "account": account })),
            UserCmd::Update {
                account,
                name,
                role,
                description,
                active,
                password_stdin,
                clear_password,
                ttl,
                bearer,
                tags: tag_list,
            } => {
                let mut body = Map::new();
                body.insert("account".into(), json!(account));
                body.insert("name".into(), json!(name));
                put(&mut body, "role", role.as_ref().map(|r| json!(r)));
                put(&mut body, "description", description.as_ref().map(|d| json!(d)));
                put(&mut body, "active", active.map(|a| json!(a)));
                put(&mut body, "jwt_ttl_secs", ttl.map(|t| json!(t)));
                put(&mut body, "bearer_token", bearer.map(|b| json!(b)));
                put(&mut body, "tags", tags(tag_list));
                if *clear_password {
                    body.insert("password".into(), json!(""));
                } else if *password_stdin {
                    body.insert("password".into(), json!(password()?));
                }
                call("user.update", Value::Object(body))
            }
            UserCmd::Delete { account, name } => {
                call("user.delete", json!({ "account": account, "name": name }))
            }
            UserCmd::Regenerate { account, name, out, force } => Call {
                out: out_file(out, *force),
                ..call("user.regenerate", json!({ "account": account, "name": name }))
            },
            UserCmd::Creds { account, name, out, force } => Call {
                out: out_file(out, *force),
                ..call("user.creds", json!({ "account": account, "name": name }))
            },
        })
    }
}

impl RoleFields {
    fn into_body(self, body: &mut Map<String, Value>, lists_always: bool) {
        put(body, "description", self.description.map(|d| json!(d)));
        for (key, allow, deny) in [
            ("publish", self.pub_allow, self.pub_deny),
            ("subscribe", self.sub_allow, self.sub_deny),
        ] {
            if lists_always || !allow.is_empty() || !deny.is_empty() {
                body.insert(key.into(), json!({ "allow": allow, "deny": deny }));
            }
        }
        if self.resp_max.is_some() || self.resp_ttl_ms.is_some() {
            body.insert(
                "response".into(),
                json!({ "max": self.resp_max.unwrap_or(1), "ttl_ms": self.resp_ttl_ms.unwrap_or(0) }),
            );
        }
        if self.subs.is_some() || self.data.is_some() || self.payload.is_some() {
            let mut limits = Map::new();
            put(&mut limits, "subs", self.subs.map(|v| json!(v)));
            put(&mut limits, "data", self.data.map(|v| json!(v)));
            put(&mut limits, "payload", self.payload.map(|v| json!(v)));
            body.insert("limits".into(), Value::Object(limits));
        }
    }
}

impl RoleCmd {
    /// The request.
    pub fn call(&self) -> Call {
        match self.clone() {
            RoleCmd::Create { account, name, fields, default } => {
                let mut body = Map::new();
                body.insert("account".into(), json!(account));
                body.insert("name".into(), json!(name));
                fields.into_body(&mut body, true);
                if default {
                    body.insert("default".into(), json!(true));
                }
                call("role.create", Value::Object(body))
            }
            RoleCmd::Get { account, name } => {
                call("role.get", json!({ "account": account, "name": name }))
            }
            RoleCmd::List { account } => call("role.list", json!({ "account": account })),
            RoleCmd::Update { account, name, fields, default } => {
                let mut body = Map::new();
                body.insert("account".into(), json!(account));
                body.insert("name".into(), json!(name));
                fields.into_body(&mut body, false);
                put(&mut body, "default", default.map(|d| json!(d)));
                call("role.update", Value::Object(body))
            }
            RoleCmd::Delete { account, name } => {
                call("role.delete", json!({ "account": account, "name": name }))
            }
        }
    }
}

impl PendingCmd {
    /// The request.
    pub fn call(&self) -> Call {
        match self {
            PendingCmd::List => call("pending.list", json!({})),
            PendingCmd::Retry { account } => {
                let body = match account {
                    Some(a) => json!({ "account": a }),
                    None => json!({}),
                };
                call("pending.retry", body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_create_sends_only_given_fields() {
        let cmd = AccountCmd::Create {
            name: "acme".into(),
            description: None,
            limits: Some(r#"{"connections":5}"#.into()),
            exports: None,
            imports: None,
        };
        let c = cmd.call().unwrap();
        assert_eq!(c.endpoint, "account.create");
        assert_eq!(c.body, json!({"name": "acme", "limits": {"connections": 5}}));
        let bad = AccountCmd::Create {
            name: "a".into(),
            description: None,
            limits: Some("{".into()),
            exports: None,
            imports: None,
        };
        assert!(bad.call().is_err());
    }

    #[test]
    fn role_create_always_sends_both_directions_and_update_only_given_ones() {
        let fields =
            RoleFields { pub_allow: vec!["sensors.*.telemetry".into()], ..RoleFields::default() };
        let create = RoleCmd::Create {
            account: "acme".into(),
            name: "sensor".into(),
            fields: fields.clone(),
            default: false,
        };
        assert_eq!(
            create.call().body,
            json!({"account": "acme", "name": "sensor",
                   "publish": {"allow": ["sensors.*.telemetry"], "deny": []},
                   "subscribe": {"allow": [], "deny": []}})
        );
        let update = RoleCmd::Update {
            account: "acme".into(),
            name: "sensor".into(),
            fields,
            default: None,
        };
        assert_eq!(
            update.call().body,
            json!({"account": "acme", "name": "sensor", "publish": {"allow": ["sensors.*.telemetry"], "deny": []}})
        );
    }

    #[test]
    fn passwords_come_from_stdin_only_when_asked() {
        let create = UserCmd::Create {
            account: "acme".into(),
            name: "dev1".into(),
            role: None,
            description: None,
            password_stdin: true,
            ttl: None,
            bearer: false,
            tags: vec![("site".into(), "berlin".into())],
        };
        let mut input = std::io::Cursor::new("s3cret-pass\nignored\n");
        let c = create.call(&mut || read_password(&mut input)).unwrap();
        assert_eq!(c.body["password"], "s3cret-pass");
        assert_eq!(c.body["tags"], json!({"site": "berlin"}));
        let get = UserCmd::Get { account: "acme".into(), name: "dev1".into() };
        let c = get.call(&mut || panic!("must not read stdin")).unwrap();
        assert_eq!(c.body, json!({"account": "acme", "name": "dev1"}));
    }
}
