//! `operator.get`, `pending.*`: what operators of nats-authd itself ask.

use serde::{Deserialize, Serialize};

use super::requests;
use crate::model::AccountName;
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
    GetOperator => OperatorGet, OperatorView;
    ListPending => PendingList, super::Page<PendingUpdate>;
    RetryPending => PendingRetry, Retried;
}

super::paged! {
    ListPending => PendingUpdate;
}
