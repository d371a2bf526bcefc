//! What a management request can fail with: one variant per thing a caller branches on.
//!
//! The wire code and the message a client sees are decided in [`crate::service::reply`], not
//! here; internal failures keep their cause as a `#[source]` for the log and never reach the
//! client.

use std::fmt;

use crate::authority::AuthorityError;
use crate::model::{NameError, SubjectError};
use crate::password::PasswordError;
use crate::store::{ConflictKind, StoreError, Tree};
use crate::trust::TrustError;

/// The kind of record an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Noun {
    Account,
    User,
    Role,
    Token,
    /// A queued claims push (by account).
    Push,
    /// The operator record.
    Operator,
    /// A login name ([`crate::model::LoginRecord`]).
    Login,
    /// Anything else the store holds.
    Record,
}

impl Noun {
    /// The noun for records of `tree`.
    pub fn of_tree(tree: Tree) -> Noun {
        match tree {
            Tree::Accounts => Noun::Account,
            Tree::Users => Noun::User,
            Tree::Roles => Noun::Role,
            Tree::Tokens => Noun::Token,
            Tree::Pending => Noun::Push,
            Tree::Operator => Noun::Operator,
            Tree::Logins => Noun::Login,
            _ => Noun::Record,
        }
    }
}

impl fmt::Display for Noun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Noun::Account => "account",
            Noun::User => "user",
            Noun::Role => "role",
            Noun::Token => "token",
            Noun::Push => "push for account",
            Noun::Operator => "operator",
            Noun::Login => "login name",
            Noun::Record => "record",
        })
    }
}

/// A boxed cause of an internal failure.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a management request failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The request is malformed or breaks a rule; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// A named record does not exist.
    #[error("{what} {name:?} not found")]
    NotFound { what: Noun, name: String },
    /// A create found the name taken.
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: Noun, name: String },
    /// The record is used by others and cannot go (a role users hold, an account with users).
    #[error("{what} {name:?} is in use: {detail}")]
    InUse { what: Noun, name: String, detail: String },
    /// The record changed between read and write; nothing was written, retrying is safe.
    #[error("{what} {name:?} changed concurrently; retry")]
    Changed { what: Noun, name: String },
    /// The record is deactivated, or being deleted.
    #[error("{what} {name:?} is inactive")]
    Inactive { what: Noun, name: String },
    /// The request is valid but the stored state forbids it (a limit reached, the last admin).
    #[error("{0}")]
    Refused(String),
    /// The caller may not do this: not a tenant user, not its own record, or a self-service
    /// right its role does not grant. The text says which, never naming another tenant's data.
    #[error("{0}")]
    Forbidden(String),
    /// The store cannot answer for now (JetStream without a leader); nothing was written.
    #[error("the store is unavailable for now (JetStream has no leader: quorum lost or an election under way); nothing was changed, retry later")]
    Unavailable(#[source] Cause),
    /// Something failed on our side; the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Cause),
}

impl ManageError {
    /// An internal failure with its cause.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        ManageError::Internal(cause.into())
    }
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { tree, key, kind } => {
                let (what, name) = (Noun::of_tree(tree), key);
                match kind {
                    ConflictKind::Exists => ManageError::AlreadyExists { what, name },
                    ConflictKind::Missing => ManageError::NotFound { what, name },
                    ConflictKind::Changed => ManageError::Changed { what, name },
                }
            }
            StoreError::Unavailable(cause) => ManageError::Unavailable(cause),
            other => ManageError::internal(other),
        }
    }
}

impl From<NameError> for ManageError {
    fn from(e: NameError) -> Self {
        ManageError::Invalid(e.to_string())
    }
}

impl From<SubjectError> for ManageError {
    fn from(e: SubjectError) -> Self {
        ManageError::Invalid(e.to_string())
    }
}

impl From<AuthorityError> for ManageError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::NoSuchAccount(name) => {
                ManageError::NotFound { what: Noun::Account, name }
            }
            AuthorityError::NoSuchUser(name) => ManageError::NotFound { what: Noun::User, name },
            AuthorityError::Store(e) => e.into(),
            other => ManageError::internal(other),
        }
    }
}

impl From<TrustError> for ManageError {
    fn from(e: TrustError) -> Self {
        ManageError::internal(e)
    }
}

impl From<PasswordError> for ManageError {
    fn from(e: PasswordError) -> Self {
        ManageError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_conflicts_become_the_error_a_caller_branches_on() {
        let conflict = |tree, key: &str, kind| StoreError::Conflict { tree, key: key.into(), kind };
        assert!(matches!(
            ManageError::from(conflict(Tree::Users, "acme/dev1", ConflictKind::Exists)),
            ManageError::AlreadyExists { what: Noun::User, ref name } if name == "acme/dev1"
        ));
        assert!(matches!(
            ManageError::from(conflict(Tree::Accounts, "acme", ConflictKind::Changed)),
            ManageError::Changed { what: Noun::Account, ref name } if name == "acme"
        ));
        assert!(matches!(
            ManageError::from(conflict(Tree::Tokens, "t1", ConflictKind::Missing)),
            ManageError::NotFound { what: Noun::Token, .. }
        ));
        let internal = ManageError::from(StoreError::backend("disk on fire"));
        assert!(matches!(internal, ManageError::Internal(_)));
        assert_eq!(internal.to_string(), "internal error", "the cause stays out of the message");
        assert!(std::error::Error::source(&internal).is_some(), "but is kept for the log");
    }
}
