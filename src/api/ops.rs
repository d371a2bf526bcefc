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

/// `pending.list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPending {}

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
    ListPending => PendingList, Vec<PendingUpdate>;
    RetryPending => PendingRetry, Retried;
}
