//! Well-known names: the built-in topology `init` creates and the subjects the service uses.
//!
//! Runtime modules read their constants here rather than from `bootstrap`, so that `init`
//! sits above the runtime and no import runs back up the layers.

/// The system account (nats-server's `system_account`).
pub const SYS_ACCOUNT: &str = "sys";
/// The callout account: the service and the sentinel live here.
pub const AUTH_ACCOUNT: &str = "auth";
/// The management account: only its users reach the management API.
pub const ADMIN_ACCOUNT: &str = "admin";

/// Name of the service user in AUTH.
pub const SERVICE_USER: &str = "service";
/// Name of the sentinel user in AUTH.
pub const SENTINEL_USER: &str = "sentinel";
/// Default name of the system-account user an admin can get creds for (`operator.sys_creds`).
pub const SYS_OPERATOR_USER: &str = "operator";
/// Name of the first admin user in ADMIN.
pub const ADMIN_USER: &str = "admin";

/// Subject prefix of the management API.
pub const API_PREFIX: &str = "authd";

/// The server requests the service makes through SYS exports (each checked to work through
/// an export of SYS and an import into AUTH on nats-server 2.15).
pub const SYS_SERVICES: [&str; 5] = [
    CLAIMS_UPDATE,
    CLAIMS_DELETE,
    CLAIMS_LIST,
    "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
    "$SYS.REQ.SERVER.*.KICK",
];

/// The [`SYS_SERVICES`] that every server of a cluster answers (the full resolver's claims
/// API). SYS exports them with the `Stream` response type, or an importer would get only the
/// first server's answer (a `Singleton` response mapping is removed after one reply).
pub const SYS_FAN_OUT_SERVICES: [&str; 4] =
    [CLAIMS_UPDATE, CLAIMS_DELETE, CLAIMS_LIST, "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"];

/// How long (nanoseconds, as the JWT wants it) the answers of every server to one
/// [`SYS_FAN_OUT_SERVICES`] request are let through to the importer: far longer than servers
/// take, and short so that the response mappings of many requests do not pile up.
pub const SYS_FAN_OUT_THRESHOLD_NS: i64 = 10_000_000_000;

/// Stores an account JWT on every server of a full resolver (answers 200 even for a JWT the
/// operator did not sign: validate before pushing).
pub const CLAIMS_UPDATE: &str = "$SYS.REQ.CLAIMS.UPDATE";
/// Removes accounts: a generic claim self-signed by the operator (`allow_delete: true`).
pub const CLAIMS_DELETE: &str = "$SYS.REQ.CLAIMS.DELETE";
/// Lists the account keys a server holds: `{"data":[...]}`.
pub const CLAIMS_LIST: &str = "$SYS.REQ.CLAIMS.LIST";

/// The JWT a server holds for `account_key` (empty if none).
pub fn claims_lookup(account_key: &str) -> String {
    format!("$SYS.REQ.ACCOUNT.{account_key}.CLAIMS.LOOKUP")
}

/// Ends connection `{"cid":N}` on the server with id `server_id` (no fan-out form exists).
pub fn kick(server_id: &str) -> String {
    format!("$SYS.REQ.SERVER.{server_id}.KICK")
}

/// Where instances tell each other the login failures and successes their brute-force
/// limiters count, in AUTH. Outside `authd.>` on purpose: ADMIN imports that whole space
/// as a service, so an admin could publish into it; this subject is in no export, so only
/// AUTH's own users reach it (the service user; the sentinel may do nothing) and no tenant
/// ever can (tenants are never in AUTH).
pub const LIMITER_SUBJECT: &str = "authd_internal.limiter";

/// Subjects no tenant may export or import: the server's own requests, our API and the
/// micro-service discovery. An export covering `$SYS.>` would hand the exporter's
/// connection list to whoever imports it.
pub const RESERVED_SUBJECTS: [&str; 3] = ["$SYS.>", "authd.>", "$SRV.>"];
