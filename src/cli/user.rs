//! `nats-authd user ...`: users of tenant accounts.

use std::path::PathBuf;

use clap::Subcommand;

use super::client::{tag, CliError, OutFile};
use crate::api::user::{
    CreateUser, DeleteUser, GetCreds, Password, RegenerateUser, UpdateUser, UserListRef, UserRef,
};
use crate::model::{AccountName, UserName};

/// `user ...`
#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// Create a user with a fresh nkey.
    Create {
        /// Account the user belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the user, unique within the account.
        #[arg(value_parser = UserName::new)]
        name: UserName,
        /// Role of the user (default: the account's default role).
        #[arg(long)]
        role: Option<String>,
        /// Who or what the user is.
        #[arg(long)]
        description: Option<String>,
        /// Read a password (for callout logins) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Read the password from the first line of this file (keeps it out of shell history
        /// and process lists).
        #[arg(long, value_name = "PATH", conflicts_with = "password_stdin")]
        password_file: Option<PathBuf>,
        /// Lifetime of the user's JWTs in seconds (0 or absent: no expiry).
        #[arg(long, value_name = "SECS")]
        ttl: Option<i64>,
        /// Issue bearer JWTs.
        #[arg(long)]
        bearer: bool,
        /// A tag for role templates, `key=value` (repeat).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tag)]
        tags: Vec<(String, String)>,
    },
    /// Show one user.
    Get {
        /// Account the user belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the user.
        #[arg(value_parser = UserName::new)]
        name: UserName,
    },
    /// List an account's users.
    List {
        /// Account whose users to list.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
    },
    /// Change a user; only the given fields change.
    Update {
        /// Account the user belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the user.
        #[arg(value_parser = UserName::new)]
        name: UserName,
        /// New role ("" falls back to the account default).
        #[arg(long)]
        role: Option<String>,
        /// Who or what the user is.
        #[arg(long)]
        description: Option<String>,
        /// false revokes it (live creds connections are cut); true restores it.
        #[arg(long)]
        active: Option<bool>,
        /// Read a new password from the first line of stdin.
        #[arg(long, conflicts_with = "clear_password")]
        password_stdin: bool,
        /// Read the new password from the first line of this file.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["password_stdin", "clear_password"])]
        password_file: Option<PathBuf>,
        /// Remove the password.
        #[arg(long)]
        clear_password: bool,
        /// New JWT lifetime in seconds (0: no expiry).
        #[arg(long, value_name = "SECS")]
        ttl: Option<i64>,
        /// true: issue bearer JWTs; false: JWTs that need the user's nkey.
        #[arg(long)]
        bearer: Option<bool>,
        /// Replace the tags, `key=value` (repeat).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tag)]
        tags: Vec<(String, String)>,
    },
    /// Delete a user and revoke its key.
    Delete {
        /// Account the user belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the user.
        #[arg(value_parser = UserName::new)]
        name: UserName,
    },
    /// Give a user a new nkey (the old one is revoked) and print its new creds.
    Regenerate {
        /// Account the user belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the user.
        #[arg(value_parser = UserName::new)]
        name: UserName,
        /// Write the creds to this file (mode 0600) instead of stdout; an existing file is
        /// refused unless --force is given.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file (the new file is mode 0600 whatever the old one was).
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Print a user's creds file.
    Creds {
        /// Account the user belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the user.
        #[arg(value_parser = UserName::new)]
        name: UserName,
        /// Write the creds to this file (mode 0600) instead of stdout; an existing file is
        /// refused unless --force is given.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file (the new file is mode 0600 whatever the old one was).
        #[arg(long, requires = "out")]
        force: bool,
    },
}

super::requests!(
    /// The request of a `user` command.
    UserRequest {
        Create(CreateUser),
        Get(UserRef),
        List(UserListRef),
        Update(UpdateUser),
        Delete(DeleteUser),
        Regenerate(RegenerateUser),
        Creds(GetCreds),
    }
);

/// The tags of a command; none given leaves them out (on update: unchanged).
fn tags(list: Vec<(String, String)>) -> Option<std::collections::BTreeMap<String, String>> {
    (!list.is_empty()).then(|| list.into_iter().collect())
}

/// The first line of `path` as a password.
fn password_from_file(path: &std::path::Path) -> Result<Password, CliError> {
    let file = std::fs::File::open(path).map_err(CliError::ReadPassword)?;
    super::client::read_password(&mut std::io::BufReader::new(file))
}

impl UserCmd {
    /// The request; `password` is called only by the commands given `--password-stdin`.
    ///
    /// # Errors
    /// What `password` fails with.
    pub fn request(
        &self,
        password: &mut dyn FnMut() -> Result<Password, CliError>,
    ) -> Result<UserRequest, CliError> {
        Ok(match self.clone() {
            UserCmd::Create {
                account,
                name,
                role,
                description,
                password_stdin,
                password_file,
                ttl,
                bearer,
                tags: tag_list,
            } => UserRequest::Create(CreateUser {
                role,
                description,
                password: match (&password_file, password_stdin) {
                    (Some(path), _) => Some(password_from_file(path)?),
                    (None, true) => Some(password()?),
                    (None, false) => None,
                },
                jwt_ttl_secs: ttl,
                bearer_token: bearer.then_some(true),
                tags: tags(tag_list),
                ..CreateUser::new(account, name)
            }),
            UserCmd::Get { account, name } => UserRequest::Get(UserRef::new(account, name)),
            UserCmd::List { account } => UserRequest::List(UserListRef::new(account)),
            UserCmd::Update {
                account,
                name,
                role,
                description,
                active,
                password_stdin,
                password_file,
                clear_password,
                ttl,
                bearer,
                tags: tag_list,
            } => UserRequest::Update(UpdateUser {
                role,
                description,
                active,
                // The API's way to remove a password is an empty one.
                password: if clear_password {
                    Some(Password::new(""))
                } else if let Some(path) = &password_file {
                    Some(password_from_file(path)?)
                } else if password_stdin {
                    Some(password()?)
                } else {
                    None
                },
                jwt_ttl_secs: ttl,
                bearer_token: bearer,
                tags: tags(tag_list),
                ..UpdateUser::new(account, name)
            }),
            UserCmd::Delete { account, name } => {
                UserRequest::Delete(DeleteUser(UserRef::new(account, name)))
            }
            UserCmd::Regenerate { account, name, .. } => {
                UserRequest::Regenerate(RegenerateUser(UserRef::new(account, name)))
            }
            UserCmd::Creds { account, name, .. } => {
                UserRequest::Creds(GetCreds(UserRef::new(account, name)))
            }
        })
    }

    /// Where a creds answer goes (`--out`, `--force`), for the commands that answer creds.
    pub fn out(&self) -> Option<OutFile> {
        match self {
            UserCmd::Regenerate { out, force, .. } | UserCmd::Creds { out, force, .. } => {
                OutFile::of(out, *force)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::read_password;
    use super::super::tests::parse;
    use super::*;
    use crate::cli::Command;

    fn user_cmd(args: &[&str]) -> UserCmd {
        let Command::User(a) = parse(args).unwrap() else { panic!("not user") };
        a.cmd
    }

    fn dev1() -> UserRef {
        UserRef::new(AccountName::new("acme").unwrap(), UserName::new("dev1").unwrap())
    }

    #[test]
    fn passwords_come_from_stdin_only_when_asked() {
        let create = user_cmd(&[
            "user",
            "create",
            "acme",
            "dev1",
            "--password-stdin",
            "--tag",
            "site=berlin",
        ]);
        let mut input = std::io::Cursor::new("s3cret-pass\nignored\n");
        let got = create.request(&mut || read_password(&mut input)).unwrap();
        let tags = [("site".to_string(), "berlin".to_string())].into_iter().collect();
        assert_eq!(
            got,
            UserRequest::Create(CreateUser {
                password: Some(Password::new("s3cret-pass")),
                tags: Some(tags),
                ..CreateUser::new(dev1().account, dev1().name)
            })
        );
        let get = user_cmd(&["user", "get", "acme", "dev1"]);
        let got = get.request(&mut || panic!("must not read stdin")).unwrap();
        assert_eq!(got, UserRequest::Get(dev1()));
    }

    #[test]
    fn an_empty_stdin_is_no_password() {
        let create = user_cmd(&["user", "create", "acme", "dev1", "--password-stdin"]);
        let mut input = std::io::Cursor::new("\n");
        let err = create.request(&mut || read_password(&mut input)).unwrap_err();
        assert!(matches!(err, CliError::NoPassword), "{err}");
    }

    #[test]
    fn clear_password_sends_the_empty_password_and_nothing_else_changes() {
        let update = user_cmd(&["user", "update", "acme", "dev1", "--clear-password"]);
        let got = update.request(&mut || panic!("must not read stdin")).unwrap();
        assert_eq!(
            got,
            UserRequest::Update(UpdateUser {
                password: Some(Password::new("")),
                ..UpdateUser::new(dev1().account, dev1().name)
            })
        );
    }

    #[test]
    fn creds_commands_know_their_out_file() {
        let creds = user_cmd(&["user", "creds", "acme", "dev1", "--out", "d.creds", "--force"]);
        assert_eq!(creds.out(), Some(OutFile { path: "d.creds".into(), replace: true }));
        assert_eq!(
            creds.request(&mut || panic!("must not read stdin")).unwrap(),
            UserRequest::Creds(GetCreds(dev1()))
        );
        assert_eq!(user_cmd(&["user", "delete", "acme", "dev1"]).out(), None);
    }
}
