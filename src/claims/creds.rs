//! Creds files: a user JWT and its seed in the decorated format nats tools write and read.

use crate::keys::Seed;

const IMPORTANT: &str = "************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.
";
const FOOTER: &str = "*************************************************************\n";

/// Why a creds file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredsError {
    /// No `-----BEGIN NATS USER JWT-----` block.
    #[error("creds file has no user JWT block")]
    MissingJwt,
    /// No seed block, or the block does not hold a user seed.
    #[error("creds file has no user nkey seed block")]
    MissingSeed,
}

/// Formats a creds file exactly as `nsc` and nats-io/jwt `FormatUserConfig` do.
pub fn format(jwt: &str, seed: &Seed) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n{IMPORTANT}\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n{FOOTER}",
        seed.expose().trim()
    )
}

/// A parsed creds file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// The user JWT.
    pub jwt: String,
    /// The user's seed.
    pub seed: Seed,
}

/// Reads a creds file: the first decorated block is the JWT, the second the seed.
///
/// Like nats-io/jwt, a block is a line of three or more dashes, a token line, and a closing
/// line of dashes; text around the blocks (the IMPORTANT banner) is ignored.
///
/// # Errors
/// [`CredsError::MissingJwt`] or [`CredsError::MissingSeed`] when a block is absent.
pub fn parse(text: &str) -> Result<Creds, CredsError> {
    let mut blocks = Vec::with_capacity(2);
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if !is_fence(line) {
            continue;
        }
        let Some(body) = lines.next() else { break };
        if body.is_empty() || is_fence(body) {
            continue;
        }
        if lines.next().is_some_and(is_fence) {
            blocks.push(body.to_string());
        }
        if blocks.len() == 2 {
            break;
        }
    }
    let mut blocks = blocks.into_iter();
    let jwt = blocks.next().ok_or(CredsError::MissingJwt)?;
    let seed = blocks.next().filter(|s| s.starts_with("SU")).ok_or(CredsError::MissingSeed)?;
    Ok(Creds { jwt, seed: Seed::new(seed) })
}

fn is_fence(line: &str) -> bool {
    line.len() >= 6 && line.starts_with("---") && line.ends_with("---")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_matches_nsc_byte_for_byte() {
        let seed = Seed::new("SUAEXAMPLE".into());
        let expected = "-----BEGIN NATS USER JWT-----\neyJ.a.b\n------END NATS USER JWT------\n\n\
************************* IMPORTANT *************************\n\
NKEY Seed printed below can be used to sign and prove identity.\n\
NKEYs are sensitive and should be treated as secrets.\n\n\
-----BEGIN USER NKEY SEED-----\nSUAEXAMPLE\n------END USER NKEY SEED------\n\n\
*************************************************************\n";
        assert_eq!(format("eyJ.a.b", &seed), expected);
    }

    #[test]
    fn parse_reads_what_format_writes() {
        let seed = Seed::new("SUAEXAMPLE".into());
        let creds = parse(&format("eyJ.a.b", &seed)).unwrap();
        assert_eq!(creds.jwt, "eyJ.a.b");
        assert_eq!(creds.seed.expose(), "SUAEXAMPLE");
    }

    #[test]
    fn parse_accepts_crlf_and_rejects_missing_blocks() {
        let text = format("eyJ.a.b", &Seed::new("SUAEXAMPLE".into())).replace('\n', "\r\n");
        assert_eq!(parse(&text).unwrap().jwt, "eyJ.a.b");
        assert_eq!(parse("nothing here"), Err(CredsError::MissingJwt));
        let only_jwt = "-----BEGIN NATS USER JWT-----\neyJ.a.b\n------END NATS USER JWT------\n";
        assert_eq!(parse(only_jwt), Err(CredsError::MissingSeed));
        let account_seed = format("eyJ.a.b", &Seed::new("SAAEXAMPLE".into()));
        assert_eq!(parse(&account_seed), Err(CredsError::MissingSeed));
    }
}
