//! What a client presents through the callout (the API-token format is in [`crate::token`]).
//!
//! - `user` + `pass`: a password login; `user` is `name` or `name@account`.
//! - `auth_token` = `authd_<id>_<secret>`: an API token ([`Token`]).
//! - `auth_token` = `name[@account]:password`: a password login from clients that can send
//!   only a token next to creds (nats-py sends `auth_token`, never user/pass, with a creds file).
//! - `user` + `auth_token` (not an API token): the token is the password.
//!
//! Secrets are taken byte for byte: never trimmed, so `name:PW ` is the password `PW ` (a
//! password may end in a space), not `PW`. Only the login part is normalized ([`login_key`]).

use std::fmt;

use zeroize::Zeroizing;

use crate::claims::ConnectOptions;
pub use crate::token::{Token, TOKEN_PREFIX};

/// A parsed credential. Secrets are wiped on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A password login.
    Password { login: String, password: Zeroizing<String> },
    /// An API token.
    Token(Token),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password { login, .. } => write!(f, "Password {{ login: {login:?} }}"),
            Credential::Token(t) => write!(f, "Token {{ id: {:?} }}", t.id),
        }
    }
}

impl Credential {
    /// The name an attempt is counted under for brute-force limits.
    pub fn login(&self) -> &str {
        match self {
            Credential::Password { login, .. } => login,
            Credential::Token(t) => &t.id,
        }
    }
}

/// Reads the credential out of CONNECT options; `None` if there is none to read.
pub fn parse(opts: &ConnectOptions) -> Option<Credential> {
    // Never trimmed: it may be a password, and a secret is compared exactly as sent.
    let token = opts.token.as_str();
    if !opts.username.is_empty() && !opts.password.is_empty() {
        return Some(Credential::Password {
            login: opts.username.clone(),
            password: Zeroizing::new(opts.password.clone()),
        });
    }
    if token.starts_with(TOKEN_PREFIX) {
        return Token::parse(token).map(Credential::Token);
    }
    if !opts.username.is_empty() && !token.is_empty() {
        return Some(Credential::Password {
            login: opts.username.clone(),
            password: Zeroizing::new(token.to_string()),
        });
    }
    let (login, password) = token.split_once(':')?;
    // Only if the part before the colon is a valid login: anything else may be a password
    // with a colon in it, and the login part is logged.
    (valid_login(login) && !password.is_empty()).then(|| Credential::Password {
        login: login.to_string(),
        password: Zeroizing::new(password.to_string()),
    })
}

/// A presented login normalized: `(name, Some(account))` for `name@account`, `(name, None)`
/// for a bare name, each trimmed and lower-cased as stored names are; `None` if not a login.
pub fn login_parts(
    login: &str,
) -> Option<(crate::model::UserName, Option<crate::model::AccountName>)> {
    use crate::model::{AccountName, UserName};
    match login.trim().rsplit_once('@') {
        Some((name, account)) => {
            Some((UserName::new(name).ok()?, Some(AccountName::new(account).ok()?)))
        }
        None => Some((UserName::new(login).ok()?, None)),
    }
}

/// The key a login is counted under when it resolves to no user: `account/name` for
/// `name@account` (what a resolved login uses too), the normalized name otherwise.
pub fn login_key(login: &str) -> String {
    match login_parts(login) {
        Some((name, Some(account))) => format!("{account}/{name}"),
        Some((name, None)) => name.to_string(),
        None => login.trim().to_ascii_lowercase(),
    }
}

/// `name` or `name@account`, each a valid name.
pub fn valid_login(login: &str) -> bool {
    use crate::model::{AccountName, UserName};
    match login.trim().rsplit_once('@') {
        Some((name, account)) => UserName::new(name).is_ok() && AccountName::new(account).is_ok(),
        None => UserName::new(login).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(user: &str, pass: &str, token: &str) -> ConnectOptions {
        ConnectOptions {
            username: user.into(),
            password: pass.into(),
            token: token.into(),
            ..ConnectOptions::default()
        }
    }

    #[test]
    fn tokens_round_trip_and_hash() {
        let token = Token::generate();
        let text = token.text();
        assert!(text.starts_with("authd_"));
        assert_eq!(text.len(), 6 + 16 + 1 + 52);
        let parsed = Token::parse(&text).unwrap();
        assert_eq!(parsed.id, token.id);
        assert_eq!(parsed.secret_sha256(), token.secret_sha256());
        assert_ne!(token.secret_sha256(), Token::generate().secret_sha256());
        for bad in ["authd_", "authd_abc", "authd__x", "authd_ABC_def", "authd_a1_b", "x_a_b"] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
        assert!(!format!("{:?}", Credential::Token(token)).contains(text.as_str()));
    }

    #[test]
    fn every_way_a_client_sends_a_secret_is_read() {
        let pw = |login: &str, password: &str| {
            Some(Credential::Password {
                login: login.into(),
                password: Zeroizing::new(password.into()),
            })
        };
        assert_eq!(parse(&opts("dev1", "pw", "")), pw("dev1", "pw"));
        assert_eq!(parse(&opts("dev1@acme", "pw", "ignored")), pw("dev1@acme", "pw"));
        assert_eq!(parse(&opts("", "", "dev1:pass:with:colons")), pw("dev1", "pass:with:colons"));
        assert_eq!(parse(&opts("dev1", "", "pw")), pw("dev1", "pw"));
        let token = Token::generate();
        assert_eq!(parse(&opts("", "", &token.text())), Some(Credential::Token(token.clone())));
        assert_eq!(parse(&opts("dev1", "", &token.text())), Some(Credential::Token(token)));
        assert_eq!(parse(&opts("", "", "")), None);
        assert_eq!(parse(&opts("", "", "nocolon")), None);
        assert_eq!(parse(&opts("", "", ":pw")), None);
        assert_eq!(
            parse(&opts("", "", "my secret:with colon")),
            None,
            "not a login before the colon"
        );
        assert_eq!(parse(&opts("", "", "dev1@acme:pw")), pw("dev1@acme", "pw"));
        assert_eq!(parse(&opts("", "", "authd_broken")), None);
        assert!(!format!("{:?}", parse(&opts("dev1", "hunter2", ""))).contains("hunter2"));
    }

    #[test]
    fn secrets_are_never_trimmed() {
        let pw = |login: &str, password: &str| {
            Some(Credential::Password {
                login: login.into(),
                password: Zeroizing::new(password.into()),
            })
        };
        assert_eq!(parse(&opts("", "", "owner@acme:PW ")), pw("owner@acme", "PW "));
        assert_eq!(parse(&opts("", "", " owner@acme: PW")), pw(" owner@acme", " PW"));
        assert_eq!(parse(&opts("dev1", "", " pw ")), pw("dev1", " pw "));
        assert_eq!(parse(&opts("dev1", " pw ", "")), pw("dev1", " pw "));
        let token = Token::generate();
        assert_eq!(parse(&opts("", "", &format!("{} ", token.text().as_str()))), None);
    }

    #[test]
    fn every_spelling_of_a_login_counts_as_one() {
        for login in ["name@acme", "NAME@ACME", " name@acme", "Name@Acme "] {
            assert_eq!(login_key(login), "acme/name", "{login:?}");
        }
        assert_eq!(login_key(" NAME"), "name");
        assert_eq!(login_key("../x"), "../x");
    }
}
