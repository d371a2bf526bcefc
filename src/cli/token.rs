//! `nats-authd token ...`: API tokens for callout logins.

use clap::Subcommand;

use crate::api::token::{CreateToken, ListTokens, RevokeToken};
use crate::model::{AccountName, UserName};

/// `token ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Make an API token for a user (printed once; only its hash is kept).
    Create {
        /// Account of the user.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// User the token logs in as.
        #[arg(value_parser = UserName::new)]
        user: UserName,
        /// What the token is for, e.g. the machine holding it.
        #[arg(long)]
        description: Option<String>,
    },
    /// List an account's tokens (never their secrets).
    List {
        /// Account whose tokens to list.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Only this user's tokens.
        #[arg(long, value_parser = UserName::new)]
        user: Option<UserName>,
    },
    /// Revoke a token; connections made with it are ended.
    Revoke {
        /// Id of the token, as `token list` shows it.
        id: String,
    },
}

super::requests!(
    /// The request of a `token` command.
    TokenRequest {
        Create(CreateToken),
        List(ListTokens),
        Revoke(RevokeToken),
    }
);

impl TokenCmd {
    /// The request.
    pub fn request(&self) -> TokenRequest {
        match self.clone() {
            TokenCmd::Create { account, user, description } => {
                TokenRequest::Create(CreateToken { account, user, description })
            }
            TokenCmd::List { account, user } => TokenRequest::List(ListTokens::new(account, user)),
            TokenCmd::Revoke { id } => TokenRequest::Revoke(RevokeToken { id }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;
    use crate::cli::Command;

    #[test]
    fn token_list_narrows_to_a_user_only_when_asked() {
        let request = |args: &[&str]| {
            let Command::Token(a) = parse(args).unwrap() else { panic!("not token") };
            a.cmd.request()
        };
        let acme = AccountName::new("acme").unwrap();
        assert_eq!(
            request(&["token", "list", "acme"]),
            TokenRequest::List(ListTokens::new(acme.clone(), None))
        );
        assert_eq!(
            request(&["token", "list", "acme", "--user", "dev1"]),
            TokenRequest::List(ListTokens::new(acme, Some(UserName::new("dev1").unwrap())))
        );
    }
}
