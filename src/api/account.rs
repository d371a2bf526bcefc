//! `account.*`: tenant accounts.

use serde::{Deserialize, Serialize};

use super::{requests, ApiRequest, Endpoint};
use crate::claims::{Export, ExportType, Import, OperatorLimits};
use crate::model::{AccountKind, AccountName, AccountRecord, UnixTime};

/// Account limits, one shape both ways: `get` shows every field, `create`/`update` take any of
/// them (an absent field stays as it is). `-1` is unlimited. The JWT's own names (`conn`,
/// `subs`, `leaf`, ...) never reach the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub connections: Option<i64>,
    pub subscriptions: Option<i64>,
    pub data: Option<i64>,
    pub payload: Option<i64>,
    pub imports: Option<i64>,
    pub exports: Option<i64>,
    pub leaf_nodes: Option<i64>,
    /// JetStream memory storage in bytes (0: no JetStream memory).
    pub mem_storage: Option<i64>,
    /// JetStream disk storage in bytes (0: no JetStream disk).
    pub disk_storage: Option<i64>,
    pub streams: Option<i64>,
    pub consumers: Option<i64>,
}

/// A stream or service an account offers to our other accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportInput {
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: ExportType,
    pub name: Option<String>,
}

/// The old name of [`Limits`], kept so callers written against it still build.
pub type LimitsInput = Limits;

impl Limits {
    /// The API shape of the limits an account's JWT carries.
    pub fn of(l: &OperatorLimits) -> Self {
        Limits {
            connections: Some(l.conn),
            subscriptions: Some(l.subs),
            data: Some(l.data),
            payload: Some(l.payload),
            imports: Some(l.imports),
            exports: Some(l.exports),
            leaf_nodes: Some(l.leaf_node_conn),
            mem_storage: Some(l.memory_storage),
            disk_storage: Some(l.disk_storage),
            streams: Some(l.streams),
            consumers: Some(l.consumer),
        }
    }
}

impl ExportInput {
    /// The API shape of an export in the account's JWT.
    pub fn of(e: &Export) -> Self {
        ExportInput { subject: e.subject.clone(), kind: e.kind, name: Some(e.name.clone()) }
    }
}

/// A stream or service taken from another of our accounts, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportInput {
    /// Name of the exporting account.
    pub account: AccountName,
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: ExportType,
    /// Where the import appears in this account (default: the same subject).
    pub local_subject: Option<String>,
    pub name: Option<String>,
}

/// `account.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: AccountName,
    pub description: Option<String>,
    pub limits: Option<LimitsInput>,
    #[serde(default)]
    pub exports: Vec<ExportInput>,
    #[serde(default)]
    pub imports: Vec<ImportInput>,
}

/// `account.update`: absent fields are left as they are; lists replace the stored ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    pub name: AccountName,
    pub description: Option<String>,
    pub active: Option<bool>,
    pub limits: Option<LimitsInput>,
    pub exports: Option<Vec<ExportInput>>,
    pub imports: Option<Vec<ImportInput>>,
    /// Role given to users created without one; `""` clears it.
    pub default_role: Option<String>,
    /// Read-only fields of [`AccountView`]: accepted so a `get` can be sent back, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AccountKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_imports: Option<Vec<Import>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<UnixTime>,
}

/// `account.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRef {
    pub name: AccountName,
}

/// `account.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    pub name: AccountName,
    /// Also delete its users and roles (otherwise an account with users is not deleted).
    #[serde(default)]
    pub cascade: bool,
}

/// An account as the API shows it (no seeds), in the shape `account.update` takes: the
/// fields of [`UpdateAccount`] with the same names and types, plus read-only fields
/// (`public_key`, `kind`, `signing_keys`, `created_at`, `updated_at`, `other_imports`) that
/// `update` accepts and ignores. So a `get`, edited, is a valid `update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub name: String,
    pub description: String,
    pub active: bool,
    pub limits: Limits,
    pub exports: Vec<ExportInput>,
    /// Imports from our other tenant accounts, by the exporter's name.
    pub imports: Vec<ImportInput>,
    /// `""` when there is none (and `""` in an update clears it).
    pub default_role: String,
    /// Read-only.
    pub public_key: String,
    /// Read-only.
    pub kind: AccountKind,
    /// Read-only.
    pub signing_keys: Vec<String>,
    /// Read-only: imports `update` does not manage (nats-authd's own self-service import,
    /// the imports of built-in accounts, an import whose exporter is gone), as the JWT has them.
    pub other_imports: Vec<Import>,
    /// Read-only.
    pub created_at: UnixTime,
    /// Read-only.
    pub updated_at: UnixTime,
}

impl AccountView {
    /// The view of `a`; `exporter` names the tenant account holding a public key, if any
    /// (imports name their exporter by key in the JWT and by name in the API).
    pub fn of(a: &AccountRecord, exporter: impl Fn(&str) -> Option<AccountName>) -> Self {
        let mut imports = Vec::new();
        let mut other_imports = Vec::new();
        for i in &a.imports {
            match exporter(&i.account).filter(|_| a.kind == AccountKind::Tenant && !i.share) {
                Some(account) => imports.push(ImportInput {
                    account,
                    subject: i.subject.clone(),
                    kind: i.kind,
                    local_subject: (!i.local_subject.is_empty()).then(|| i.local_subject.clone()),
                    name: Some(i.name.clone()),
                }),
                None => other_imports.push(i.clone()),
            }
        }
        AccountView {
            name: a.name.to_string(),
            description: a.description.clone(),
            active: a.active,
            limits: Limits::of(&a.limits),
            exports: a.exports.iter().map(ExportInput::of).collect(),
            imports,
            default_role: a.default_role.as_ref().map(ToString::to_string).unwrap_or_default(),
            public_key: a.public_key().to_string(),
            kind: a.kind,
            signing_keys: a.signing_keys.iter().map(|k| k.public.clone()).collect(),
            other_imports,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// `account.delete` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub name: String,
    pub users: usize,
    pub roles: usize,
}

impl CreateAccount {
    /// A request for an account with this name and nothing else set.
    pub fn new(name: AccountName) -> Self {
        CreateAccount { name, description: None, limits: None, exports: vec![], imports: vec![] }
    }
}

impl UpdateAccount {
    /// A request that changes nothing yet: set the fields to change.
    pub fn new(name: AccountName) -> Self {
        UpdateAccount {
            name,
            description: None,
            active: None,
            limits: None,
            exports: None,
            imports: None,
            default_role: None,
            public_key: None,
            kind: None,
            signing_keys: None,
            other_imports: None,
            created_at: None,
            updated_at: None,
        }
    }
}

/// `account.list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAccounts {
    /// Most items in the answer (default 500, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    pub cursor: Option<String>,
}

impl ApiRequest for CreateAccount {
    const ENDPOINT: Endpoint = Endpoint::AccountCreate;
    type Reply = AccountView;
    fn pushed_account(&self) -> Option<&AccountName> {
        Some(&self.name)
    }
}

impl ApiRequest for UpdateAccount {
    const ENDPOINT: Endpoint = Endpoint::AccountUpdate;
    type Reply = AccountView;
    fn pushed_account(&self) -> Option<&AccountName> {
        Some(&self.name)
    }
}

impl ApiRequest for DeleteAccount {
    const ENDPOINT: Endpoint = Endpoint::AccountDelete;
    type Reply = Deleted;
    fn pushed_account(&self) -> Option<&AccountName> {
        Some(&self.name)
    }
}

requests! {
    AccountRef => AccountGet, AccountView;
    ListAccounts => AccountList, super::Page<AccountView>;
}

super::paged! {
    ListAccounts => AccountView;
}
