//! `nats-authd pending ...`: account pushes still queued, or failed.

use clap::Subcommand;

use crate::api::ops::{ListPending, RetryPending};
use crate::model::AccountName;

/// `pending ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PendingCmd {
    /// List queued and failed account pushes.
    List,
    /// Re-queue failed pushes (all, or one account's).
    Retry {
        /// Only this account's failed push (default: every failed push).
        #[arg(value_parser = AccountName::new)]
        account: Option<AccountName>,
    },
}

super::requests!(
    /// The request of a `pending` command.
    PendingRequest {
        List(ListPending),
        Retry(RetryPending),
    }
);

impl PendingCmd {
    /// The request.
    pub fn request(&self) -> PendingRequest {
        match self.clone() {
            PendingCmd::List => PendingRequest::List(ListPending::default()),
            PendingCmd::Retry { account } => PendingRequest::Retry(RetryPending { account }),
        }
    }
}
