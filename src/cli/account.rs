//! `nats-authd account ...`: tenant accounts.

use clap::Subcommand;

use super::client::{json_value, Json};
use crate::api::account::{
    AccountRef, CreateAccount, DeleteAccount, ExportInput, ImportInput, LimitsInput, ListAccounts,
    UpdateAccount,
};
use crate::model::AccountName;

/// `account ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AccountCmd {
    /// Create a tenant account.
    Create {
        /// Name of the account.
        #[arg(value_parser = AccountName::new)]
        name: AccountName,
        /// What the account is for.
        #[arg(long)]
        description: Option<String>,
        /// Limits as JSON, e.g. '{"connections":100,"mem_storage":1048576}' (-1: unlimited).
        #[arg(long, value_name = "JSON")]
        limits: Option<Json<LimitsInput>>,
        /// Exports as JSON, e.g. '[{"subject":"orders.>","type":"service"}]'.
        #[arg(long, value_name = "JSON")]
        exports: Option<Json<Vec<ExportInput>>>,
        /// Imports as JSON, e.g. '[{"account":"acme","subject":"orders.>","type":"service"}]'.
        #[arg(long, value_name = "JSON")]
        imports: Option<Json<Vec<ImportInput>>>,
    },
    /// Show one account.
    Get {
        /// Name of the account.
        #[arg(value_parser = AccountName::new)]
        name: AccountName,
    },
    /// List every account.
    List,
    /// Change an account; only the given fields change.
    Update {
        /// Name of the account.
        #[arg(value_parser = AccountName::new)]
        name: AccountName,
        /// What the account is for.
        #[arg(long)]
        description: Option<String>,
        /// false stops its users connecting; true lets them back.
        #[arg(long)]
        active: Option<bool>,
        /// New limits as JSON, as for `account create` (-1: unlimited).
        #[arg(long, value_name = "JSON")]
        limits: Option<Json<LimitsInput>>,
        /// Exports as JSON, replacing the stored ones ('[]' removes them all).
        #[arg(long, value_name = "JSON")]
        exports: Option<Json<Vec<ExportInput>>>,
        /// Imports as JSON, replacing the stored ones ('[]' removes them all).
        #[arg(long, value_name = "JSON")]
        imports: Option<Json<Vec<ImportInput>>>,
        /// Role for users created without one ("" clears it).
        #[arg(long)]
        default_role: Option<String>,
    },
    /// Delete an account and remove it from the servers.
    Delete {
        /// Name of the account.
        #[arg(value_parser = AccountName::new)]
        name: AccountName,
        /// Also delete its users and roles.
        #[arg(long)]
        cascade: bool,
    },
}

super::requests!(
    /// The request of an `account` command.
    AccountRequest {
        Create(CreateAccount),
        Get(AccountRef),
        List(ListAccounts),
        Update(UpdateAccount),
        Delete(DeleteAccount),
    }
);

impl AccountCmd {
    /// The request. Names and JSON flags were checked when the command line was parsed.
    pub fn request(&self) -> AccountRequest {
        match self.clone() {
            AccountCmd::Create { name, description, limits, exports, imports } => {
                AccountRequest::Create(CreateAccount {
                    description,
                    limits: json_value(&limits),
                    exports: json_value(&exports).unwrap_or_default(),
                    imports: json_value(&imports).unwrap_or_default(),
                    ..CreateAccount::new(name)
                })
            }
            AccountCmd::Get { name } => AccountRequest::Get(AccountRef { name }),
            AccountCmd::List => AccountRequest::List(ListAccounts::default()),
            AccountCmd::Update {
                name,
                description,
                active,
                limits,
                exports,
                imports,
                default_role,
            } => AccountRequest::Update(UpdateAccount {
                description,
                active,
                limits: json_value(&limits),
                exports: json_value(&exports),
                imports: json_value(&imports),
                default_role,
                ..UpdateAccount::new(name)
            }),
            AccountCmd::Delete { name, cascade } => {
                AccountRequest::Delete(DeleteAccount { name, cascade })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;
    use crate::claims::ExportType;
    use crate::cli::Command;

    fn request(args: &[&str]) -> AccountRequest {
        let Command::Account(a) = parse(args).unwrap() else { panic!("not account") };
        a.cmd.request()
    }

    fn acme() -> AccountName {
        AccountName::new("acme").unwrap()
    }

    #[test]
    fn account_create_sends_only_given_fields() {
        let limits = LimitsInput { connections: Some(5), ..LimitsInput::default() };
        assert_eq!(
            request(&["account", "create", "ACME", "--limits", r#"{"connections":5}"#]),
            AccountRequest::Create(CreateAccount {
                limits: Some(limits),
                ..CreateAccount::new(acme())
            })
        );
    }

    #[test]
    fn json_flags_become_typed_exports_and_imports() {
        let got = request(&[
            "account",
            "update",
            "acme",
            "--exports",
            r#"[{"subject":"orders.>","type":"service"}]"#,
            "--imports",
            "[]",
        ]);
        let export =
            ExportInput { subject: "orders.>".into(), kind: ExportType::Service, name: None };
        assert_eq!(
            got,
            AccountRequest::Update(UpdateAccount {
                exports: Some(vec![export]),
                imports: Some(vec![]),
                ..UpdateAccount::new(acme())
            })
        );
    }

    #[test]
    fn a_bad_json_flag_or_name_is_refused_before_any_request() {
        use clap::error::ErrorKind;
        for args in [
            &["account", "create", "a", "--limits", "{"][..],
            &["account", "create", "a", "--limits", r#"{"conns":5}"#],
            &["account", "create", "a", "--exports", r#"[{"subject":"x","type":"rpc"}]"#],
            &["account", "update", "a", "--imports", r#"{"account":"b"}"#],
            &["account", "get", "a b"],
        ] {
            let err = parse(args).expect_err("accepted");
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{args:?}: {err}");
        }
    }
}
