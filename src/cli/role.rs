//! `nats-authd role ...`: named permission sets within an account.

use clap::{Args, Subcommand};

use crate::api::role::{
    CreateRole, DeleteRole, PermissionInput, ResponseInput, RoleLimitsInput, RoleListRef, RoleRef,
    UpdateRole,
};
use crate::model::{AccountName, RoleName};

/// Permission and limit flags shared by `role create` and `role update`.
#[derive(Debug, Clone, Default, Args)]
pub struct RoleFields {
    /// What the role is for.
    #[arg(long)]
    pub description: Option<String>,
    /// Subject the role may publish to (repeat). On update, replaces the publish allow list
    /// and nothing else.
    #[arg(long = "pub-allow", value_name = "SUBJECT")]
    pub pub_allow: Vec<String>,
    /// Subject the role may not publish to (repeat). On update, replaces the publish deny list
    /// and nothing else.
    #[arg(long = "pub-deny", value_name = "SUBJECT")]
    pub pub_deny: Vec<String>,
    /// Subject the role may subscribe to (repeat). On update, replaces the subscribe allow
    /// list and nothing else.
    #[arg(long = "sub-allow", value_name = "SUBJECT")]
    pub sub_allow: Vec<String>,
    /// Subject the role may not subscribe to (repeat). On update, replaces the subscribe deny
    /// list and nothing else.
    #[arg(long = "sub-deny", value_name = "SUBJECT")]
    pub sub_deny: Vec<String>,
    /// Add a subject to the publish allow list (repeat), keeping the others.
    #[arg(long = "add-pub-allow", value_name = "SUBJECT")]
    pub add_pub_allow: Vec<String>,
    /// Take a subject out of the publish allow list (repeat).
    #[arg(long = "rm-pub-allow", value_name = "SUBJECT")]
    pub rm_pub_allow: Vec<String>,
    /// Add a subject to the publish deny list (repeat), keeping the others.
    #[arg(long = "add-pub-deny", value_name = "SUBJECT")]
    pub add_pub_deny: Vec<String>,
    /// Take a subject out of the publish deny list (repeat).
    #[arg(long = "rm-pub-deny", value_name = "SUBJECT")]
    pub rm_pub_deny: Vec<String>,
    /// Add a subject to the subscribe allow list (repeat), keeping the others.
    #[arg(long = "add-sub-allow", value_name = "SUBJECT")]
    pub add_sub_allow: Vec<String>,
    /// Take a subject out of the subscribe allow list (repeat).
    #[arg(long = "rm-sub-allow", value_name = "SUBJECT")]
    pub rm_sub_allow: Vec<String>,
    /// Add a subject to the subscribe deny list (repeat), keeping the others.
    #[arg(long = "add-sub-deny", value_name = "SUBJECT")]
    pub add_sub_deny: Vec<String>,
    /// Take a subject out of the subscribe deny list (repeat).
    #[arg(long = "rm-sub-deny", value_name = "SUBJECT")]
    pub rm_sub_deny: Vec<String>,
    /// Replies allowed per received request (0 removes the permission).
    #[arg(long)]
    pub resp_max: Option<i64>,
    /// How long the reply permission lasts, in milliseconds.
    #[arg(long)]
    pub resp_ttl_ms: Option<i64>,
    /// Per-user subscription limit (-1: unlimited).
    #[arg(long)]
    pub subs: Option<i64>,
    /// Per-user data limit in bytes (-1: unlimited).
    #[arg(long)]
    pub data: Option<i64>,
    /// Per-user payload limit in bytes (-1: unlimited).
    #[arg(long)]
    pub payload: Option<i64>,
}

/// `role ...`
#[derive(Debug, Clone, Subcommand)]
pub enum RoleCmd {
    /// Create a role.
    Create {
        /// Account the role belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the role, unique within the account.
        #[arg(value_parser = RoleName::new)]
        name: RoleName,
        #[command(flatten)]
        fields: RoleFields,
        /// Make it the account's default role.
        #[arg(long)]
        default: bool,
    },
    /// Show one role.
    Get {
        /// Account the role belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the role.
        #[arg(value_parser = RoleName::new)]
        name: RoleName,
    },
    /// List an account's roles.
    List {
        /// Account whose roles to list.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
    },
    /// Change a role; each given list replaces that list only (the others stay).
    Update {
        /// Account the role belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the role.
        #[arg(value_parser = RoleName::new)]
        name: RoleName,
        #[command(flatten)]
        fields: RoleFields,
        /// true: make it the account's default role; false: stop it being the default.
        #[arg(long)]
        default: Option<bool>,
    },
    /// Delete a role no user holds.
    Delete {
        /// Account the role belongs to.
        #[arg(value_parser = AccountName::new)]
        account: AccountName,
        /// Name of the role.
        #[arg(value_parser = RoleName::new)]
        name: RoleName,
    },
}

super::requests!(
    /// The request of a `role` command.
    RoleRequest {
        Create(CreateRole),
        Get(RoleRef),
        List(RoleListRef),
        Update(UpdateRole),
        Delete(DeleteRole),
    }
);

/// The parts of a create or update request the shared flags make.
struct Parts {
    publish: PermissionInput,
    subscribe: PermissionInput,
    response: Option<ResponseInput>,
    limits: Option<RoleLimitsInput>,
}

impl RoleFields {
    fn parts(self) -> Parts {
        let given = [self.resp_max, self.resp_ttl_ms];
        // One reply, no time limit, unless said otherwise: what a request-reply role needs.
        let response = given.iter().any(Option::is_some).then(|| ResponseInput {
            max: self.resp_max.unwrap_or(1),
            ttl_ms: self.resp_ttl_ms.unwrap_or(0),
        });
        let limits = [self.subs, self.data, self.payload]
            .iter()
            .any(Option::is_some)
            .then_some(RoleLimitsInput { subs: self.subs, data: self.data, payload: self.payload });
        // A list is sent only when its flag is given: an update replaces just that list.
        let list = |subjects: Vec<String>| (!subjects.is_empty()).then_some(subjects);
        Parts {
            publish: PermissionInput {
                allow: list(self.pub_allow),
                deny: list(self.pub_deny),
                add_allow: list(self.add_pub_allow),
                remove_allow: list(self.rm_pub_allow),
                add_deny: list(self.add_pub_deny),
                remove_deny: list(self.rm_pub_deny),
            },
            subscribe: PermissionInput {
                allow: list(self.sub_allow),
                deny: list(self.sub_deny),
                add_allow: list(self.add_sub_allow),
                remove_allow: list(self.rm_sub_allow),
                add_deny: list(self.add_sub_deny),
                remove_deny: list(self.rm_sub_deny),
            },
            response,
            limits,
        }
    }
}

/// A direction to change on update: only if a flag of it was given.
fn given(permission: PermissionInput) -> Option<PermissionInput> {
    (permission != PermissionInput::default()).then_some(permission)
}

impl RoleCmd {
    /// The request. Names were checked when the command line was parsed; subjects are
    /// checked by the service.
    pub fn request(&self) -> RoleRequest {
        match self.clone() {
            RoleCmd::Create { account, name, fields, default } => {
                let description = fields.description.clone();
                let Parts { publish, subscribe, response, limits } = fields.parts();
                RoleRequest::Create(CreateRole {
                    description,
                    publish,
                    subscribe,
                    response,
                    limits,
                    default,
                    ..CreateRole::new(account, name)
                })
            }
            RoleCmd::Get { account, name } => RoleRequest::Get(RoleRef::new(account, name)),
            RoleCmd::List { account } => RoleRequest::List(RoleListRef::new(account)),
            RoleCmd::Update { account, name, fields, default } => {
                let description = fields.description.clone();
                let Parts { publish, subscribe, response, limits } = fields.parts();
                RoleRequest::Update(UpdateRole {
                    description,
                    publish: given(publish),
                    subscribe: given(subscribe),
                    response,
                    limits,
                    default,
                    ..UpdateRole::new(account, name)
                })
            }
            RoleCmd::Delete { account, name } => {
                RoleRequest::Delete(DeleteRole(RoleRef::new(account, name)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;
    use crate::cli::Command;

    fn request(args: &[&str]) -> RoleRequest {
        let Command::Role(a) = parse(args).unwrap() else { panic!("not role") };
        a.cmd.request()
    }

    fn sensor() -> RoleRef {
        RoleRef::new(AccountName::new("acme").unwrap(), RoleName::new("sensor").unwrap())
    }

    #[test]
    fn role_flags_send_only_the_lists_they_name() {
        let flags = ["acme", "sensor", "--pub-allow", "sensors.*.telemetry"];
        // The deny list is not sent: an update keeps the stored one.
        let publish = PermissionInput {
            allow: Some(vec!["sensors.*.telemetry".into()]),
            ..Default::default()
        };
        let create = request(&[&["role", "create"][..], &flags].concat());
        assert_eq!(
            create,
            RoleRequest::Create(CreateRole {
                publish: publish.clone(),
                subscribe: PermissionInput::default(),
                ..CreateRole::new(sensor().account, sensor().name)
            })
        );
        let update = request(&[&["role", "update"][..], &flags].concat());
        assert_eq!(
            update,
            RoleRequest::Update(UpdateRole {
                publish: Some(publish),
                ..UpdateRole::new(sensor().account, sensor().name)
            })
        );
        let deny_only = request(&["role", "update", "acme", "sensor", "--pub-deny", "x"]);
        assert_eq!(
            deny_only,
            RoleRequest::Update(UpdateRole {
                publish: Some(PermissionInput {
                    deny: Some(vec!["x".into()]),
                    ..Default::default()
                }),
                ..UpdateRole::new(sensor().account, sensor().name)
            })
        );
        let edit = request(&[
            "role",
            "update",
            "acme",
            "sensor",
            "--add-sub-allow",
            "a.>",
            "--rm-pub-deny",
            "x",
        ]);
        assert_eq!(
            edit,
            RoleRequest::Update(UpdateRole {
                publish: Some(PermissionInput {
                    remove_deny: Some(vec!["x".into()]),
                    ..Default::default()
                }),
                subscribe: Some(PermissionInput {
                    add_allow: Some(vec!["a.>".into()]),
                    ..Default::default()
                }),
                ..UpdateRole::new(sensor().account, sensor().name)
            })
        );
    }

    #[test]
    fn a_reply_flag_alone_means_one_reply_without_time_limit() {
        let got =
            request(&["role", "update", "acme", "sensor", "--resp-ttl-ms", "500", "--subs", "10"]);
        assert_eq!(
            got,
            RoleRequest::Update(UpdateRole {
                response: Some(ResponseInput { max: 1, ttl_ms: 500 }),
                limits: Some(RoleLimitsInput { subs: Some(10), data: None, payload: None }),
                ..UpdateRole::new(sensor().account, sensor().name)
            })
        );
    }
}
