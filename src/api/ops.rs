//! `operator.get`, `pending.*`: what operators of nats-authd itself ask.

use serde::{Deserialize, Serialize};

use super::{ApiRequest, Endpoint};
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

impl ApiRequest for GetOperator {
    const ENDPOINT: Endpoint = Endpoint::OperatorGet;
    type Reply = OperatorView;
}

/// `pending.list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPending {}

impl ApiRequest for ListPending {
    const ENDPOINT: Endpoint = Endpoint::PendingList;
    type Reply = Vec<PendingUpdate>;
}

/// `pending.retry`: all failed pushes, or one account's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPending {
    #[serde(default)]
    pub account: Option<AccountName>,
}

/// How many failed pushes were queued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    pub retried: usize,
}

impl ApiRequest for RetryPending {
    const ENDPOINT: Endpoint = Endpoint::PendingRetry;
    type Reply = Retried;
}

/// `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetStatus {}
