//! The `nats` bodies of NATS JWT v2 claims, field for field as nats-io/jwt v2 serializes them.
//!
//! Go's `omitempty` drops zero numbers, `false`, empty strings and empty lists, but never a struct,
//! so nested structs (`pub`, `sub`, `limits`, `authorization`, ...) are always written. The
//! `skip_serializing_if` attributes below reproduce exactly that, so our tokens look like the ones
//! `nsc` writes and the server reads them the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `-1`: no limit. Zero means zero (a missing field decodes as zero in the server).
pub const NO_LIMIT: i64 = -1;

/// JWT version this crate reads and writes.
pub const CLAIMS_VERSION: i64 = 2;

pub(crate) fn is_zero(v: &i64) -> bool {
    *v == 0
}
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

/// `tags`, `type` and `version`, present in every `nats` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GenericFields {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
}

impl GenericFields {
    fn of(kind: &str) -> Self {
        GenericFields { tags: Vec::new(), kind: kind.to_string(), version: CLAIMS_VERSION }
    }
}

/// Operator body: self-signed, names the system account and the operator signing keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account_server_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_service_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assert_server_version: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub strict_signing_key_usage: bool,
    #[serde(flatten)]
    pub generic: GenericFields,
}

impl Default for Operator {
    fn default() -> Self {
        Operator {
            signing_keys: Vec::new(),
            account_server_url: String::new(),
            operator_service_urls: Vec::new(),
            system_account: String::new(),
            assert_server_version: String::new(),
            strict_signing_key_usage: false,
            generic: GenericFields::of("operator"),
        }
    }
}

/// Publish or subscribe allow/deny lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Permission to publish to reply subjects of received requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResponsePermission {
    /// How many responses per request (`max`).
    #[serde(rename = "max")]
    pub max_msgs: i64,
    /// How long the permission lasts, in nanoseconds (Go `time.Duration`).
    #[serde(rename = "ttl")]
    pub ttl_nanos: i64,
}

/// Publish, subscribe and response permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Permissions {
    #[serde(rename = "pub", default)]
    pub publish: Permission,
    #[serde(rename = "sub", default)]
    pub subscribe: Permission,
    #[serde(rename = "resp", default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponsePermission>,
}

/// A time-of-day window in which a user may connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TimeRange {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end: String,
}

/// Per-user limits: `subs`, `data`, `payload` plus source networks and connect times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLimits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    #[serde(rename = "times_location", default, skip_serializing_if = "String::is_empty")]
    pub locale: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subs: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub data: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payload: i64,
}

impl Default for UserLimits {
    fn default() -> Self {
        UserLimits {
            src: Vec::new(),
            times: Vec::new(),
            locale: String::new(),
            subs: NO_LIMIT,
            data: NO_LIMIT,
            payload: NO_LIMIT,
        }
    }
}

/// Permissions and limits of a user, also the template of a scoped signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserPermissionLimits {
    #[serde(flatten)]
    pub permissions: Permissions,
    #[serde(flatten)]
    pub limits: UserLimits,
    #[serde(default, skip_serializing_if = "is_false")]
    pub bearer_token: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub proxy_required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_connection_types: Vec<String>,
}

/// User body. A user signed by an account signing key carries `issuer_account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    #[serde(flatten)]
    pub permission_limits: UserPermissionLimits,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    #[serde(flatten)]
    pub generic: GenericFields,
}

impl Default for User {
    fn default() -> Self {
        User {
            permission_limits: UserPermissionLimits::default(),
            issuer_account: String::new(),
            generic: GenericFields::of("user"),
        }
    }
}

/// Account limits: core NATS, account and JetStream limits, flattened as in Go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OperatorLimits {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subs: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub data: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payload: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub imports: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exports: i64,
    #[serde(rename = "wildcards", default, skip_serializing_if = "is_false")]
    pub wildcard_exports: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disallow_bearer: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conn: i64,
    #[serde(rename = "leaf", default, skip_serializing_if = "is_zero")]
    pub leaf_node_conn: i64,
    #[serde(rename = "mem_storage", default, skip_serializing_if = "is_zero")]
    pub memory_storage: i64,
    #[serde(rename = "disk_storage", default, skip_serializing_if = "is_zero")]
    pub disk_storage: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streams: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consumer: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mem_max_stream_bytes: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_max_stream_bytes: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub max_bytes_required: bool,
}

impl OperatorLimits {
    /// Unlimited core and account limits, JetStream off: what `nsc add account` writes.
    /// (`Default` is all zeros, which is how the server reads a missing `limits`.)
    pub fn unlimited() -> Self {
        OperatorLimits {
            subs: NO_LIMIT,
            data: NO_LIMIT,
            payload: NO_LIMIT,
            imports: NO_LIMIT,
            exports: NO_LIMIT,
            wildcard_exports: true,
            disallow_bearer: false,
            conn: NO_LIMIT,
            leaf_node_conn: NO_LIMIT,
            memory_storage: 0,
            disk_storage: 0,
            streams: 0,
            consumer: 0,
            max_ack_pending: 0,
            mem_max_stream_bytes: 0,
            disk_max_stream_bytes: 0,
            max_bytes_required: false,
        }
    }
}

/// `stream` or `service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportType {
    Stream,
    Service,
}

/// How many responses a service export may send per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseType {
    Singleton,
    Stream,
    Chunked,
}

/// A stream or service this account offers to others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: ExportType,
    #[serde(default, skip_serializing_if = "is_false")]
    pub token_req: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_type: Option<ResponseType>,
    /// Nanoseconds (Go `time.Duration`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub response_threshold: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub account_token_position: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub advertise: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Export {
    /// A public service export of `subject`.
    pub fn service(name: &str, subject: &str) -> Self {
        Export {
            name: name.to_string(),
            subject: subject.to_string(),
            kind: ExportType::Service,
            token_req: false,
            revocations: BTreeMap::new(),
            response_type: None,
            response_threshold: 0,
            account_token_position: 0,
            advertise: false,
            description: String::new(),
        }
    }
}

/// A stream or service taken from another account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub subject: String,
    /// Public key of the exporting account.
    pub account: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_subject: String,
    #[serde(rename = "type")]
    pub kind: ExportType,
    /// Hand the exporter the requester's identity (`Nats-Request-Info` header).
    #[serde(default, skip_serializing_if = "is_false")]
    pub share: bool,
}

impl Import {
    /// A service import of `subject` from the account `account`.
    pub fn service(name: &str, subject: &str, account: &str) -> Self {
        Import {
            name: name.to_string(),
            subject: subject.to_string(),
            account: account.to_string(),
            token: String::new(),
            local_subject: String::new(),
            kind: ExportType::Service,
            share: false,
        }
    }
}

/// The auth callout section of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExternalAuthorization {
    /// Users that bypass the callout (the service itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_users: Vec<String>,
    /// Accounts the callout may place users in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_accounts: Vec<String>,
    /// Curve key the server seals requests to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub xkey: String,
}

/// A signing key of an account: plain, or scoped to a role with a permission template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SigningKey {
    Plain(String),
    Scoped(Box<UserScope>),
}

impl SigningKey {
    /// The public key, whatever the form.
    pub fn key(&self) -> &str {
        match self {
            SigningKey::Plain(k) => k,
            SigningKey::Scoped(s) => &s.key,
        }
    }
}

/// A scoped signing key: users it signs get `template`, whatever their own JWT says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserScope {
    /// Always `user_scope`.
    pub kind: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    pub template: UserPermissionLimits,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Account body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<Import>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<Export>,
    #[serde(default)]
    pub limits: OperatorLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKey>,
    /// User public key (or `*`) -> unix time before which its JWTs are revoked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    #[serde(default)]
    pub default_permissions: Permissions,
    #[serde(default)]
    pub authorization: ExternalAuthorization,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub info_url: String,
    #[serde(flatten)]
    pub generic: GenericFields,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            imports: Vec::new(),
            exports: Vec::new(),
            limits: OperatorLimits::unlimited(),
            signing_keys: Vec::new(),
            revocations: BTreeMap::new(),
            default_permissions: Permissions::default(),
            authorization: ExternalAuthorization::default(),
            description: String::new(),
            info_url: String::new(),
            generic: GenericFields::of("account"),
        }
    }
}

/// Generic body; nats-authd uses it only for `$SYS.REQ.CLAIMS.DELETE` (`accounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generic {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    #[serde(flatten)]
    pub generic: GenericFields,
}

impl Generic {
    /// The body of a claims-delete request for `accounts`.
    pub fn delete_accounts(accounts: Vec<String>) -> Self {
        Generic { accounts, generic: GenericFields::of("generic") }
    }
}

/// The server that sent an authorization request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServerId {
    pub name: String,
    pub host: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub xkey: String,
}

/// The connecting client as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientInformation {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The connection id (`cid`), used to kick the connection later.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub id: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub client_type: String,
    #[serde(rename = "mqtt_id", default, skip_serializing_if = "String::is_empty")]
    pub mqtt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// What the client sent in CONNECT. Secrets live here: never log this struct.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConnectOptions {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nkey: String,
    #[serde(rename = "sig", default, skip_serializing_if = "String::is_empty")]
    pub signed_nonce: String,
    #[serde(rename = "auth_token", default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(rename = "user", default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(rename = "pass", default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default)]
    pub protocol: i64,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("username", &self.username)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .field("token", &if self.token.is_empty() { "" } else { "<redacted>" })
            .field("name", &self.name)
            .field("lang", &self.lang)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// TLS details of the client connection, when it used TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientTls {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cipher: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified_chains: Vec<Vec<String>>,
}

/// Authorization request body (server -> callout service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    #[serde(rename = "server_id")]
    pub server: ServerId,
    pub user_nkey: String,
    #[serde(rename = "client_info")]
    pub client_information: ClientInformation,
    #[serde(rename = "connect_opts")]
    pub connect_options: ConnectOptions,
    #[serde(rename = "client_tls", default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_nonce: String,
    #[serde(flatten)]
    pub generic: GenericFields,
}

impl AuthorizationRequest {
    /// A request as a server would send it (used by tests and benchmarks).
    pub fn new(server: ServerId, user_nkey: String) -> Self {
        AuthorizationRequest {
            server,
            user_nkey,
            client_information: ClientInformation::default(),
            connect_options: ConnectOptions::default(),
            tls: None,
            request_nonce: String::new(),
            generic: GenericFields::of("authorization_request"),
        }
    }
}

/// Authorization response body (callout service -> server): a user JWT or an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationResponse {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    #[serde(flatten)]
    pub generic: GenericFields,
}

impl AuthorizationResponse {
    /// A response that admits the client with `jwt`.
    pub fn allow(jwt: String) -> Self {
        AuthorizationResponse {
            jwt,
            error: String::new(),
            issuer_account: String::new(),
            generic: GenericFields::of("authorization_response"),
        }
    }

    /// A response that refuses the client; `error` reaches the server log, not the client.
    pub fn deny(error: String) -> Self {
        AuthorizationResponse {
            jwt: String::new(),
            error,
            issuer_account: String::new(),
            generic: GenericFields::of("authorization_response"),
        }
    }
}
