//! `account.*`: tenant accounts.

use serde::{Deserialize, Serialize};

use super::{requests, ApiRequest, Endpoint};
use crate::claims::{Export, ExportType, Import, OperatorLimits};
use crate::model::{AccountKind, AccountName, AccountRecord, UnixTime};

/// Account limits as the API takes them; every field optional, `-1` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
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

/// An account as the API shows it: no seeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub name: String,
    pub public_key: String,
    pub kind: AccountKind,
    pub description: String,
    pub active: bool,
    pub signing_keys: Vec<String>,
    pub limits: OperatorLimits,
    pub imports: Vec<Import>,
    pub exports: Vec<Export>,
    pub default_role: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl From<&AccountRecord> for AccountView {
    fn from(a: &AccountRecord) -> Self {
        AccountView {
            name: a.name.to_string(),
            public_key: a.public_key().to_string(),
            kind: a.kind,
            description: a.description.clone(),
            active: a.active,
            signing_keys: a.signing_keys.iter().map(|k| k.public.clone()).collect(),
            limits: a.limits.clone(),
            imports: a.imports.clone(),
            exports: a.exports.clone(),
            default_role: a.default_role.as_ref().map(ToString::to_string),
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
        }
    }
}

/// `account.list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAccounts {}

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
    ListAccounts => AccountList, Vec<AccountView>;
}
