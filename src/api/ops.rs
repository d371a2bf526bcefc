//! `operator.get`, `pending.*`: what operators of nats-authd itself ask.

use serde::{Deserialize, Serialize};

use super::requests;
use crate::api::user::CredsView;
use crate::model::{AccountName, UserName};
use crate::queue::PendingUpdate;

/// `operator.get`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetOperator {}

/// What another server needs to trust this operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorView {
    pub name: String,
    pub public_key: String,
    pub signing_keys: Vec<String>,
    pub system_account: String,
    /// The operator JWT, signed now.
    pub jwt: String,
}

/// `operator.sys_creds`: creds of a user of the system account (made if missing), for the
/// server's own requests (`nats server list`, `report`, `ping`): what nsc and `nats auth`
/// give an operator. Never a callout login: SYS is not the callout account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysCreds {
    /// The user's name in SYS; default `operator`.
    pub name: Option<UserName>,
}

/// `pending.list`, by account name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPending {
    /// Most items in the answer (default 500, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    pub cursor: Option<String>,
}

/// `pending.retry`: all failed pushes, or one account's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPending {
    pub account: Option<AccountName>,
}

/// How many failed pushes were queued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    pub retried: usize,
}

/// `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetStatus {}

requests! {
    SysCreds => OperatorSysCreds, CredsView;
    GetOperator => OperatorGet, OperatorView;
    ListPending => PendingList, super::Page<PendingUpdate>;
    RetryPending => PendingRetry, Retried;
}

super::paged! {
    ListPending => PendingUpdate;
}
