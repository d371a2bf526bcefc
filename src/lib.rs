//! nats-authd: authentication and account management for NATS, living inside NATS.
//!
//! It keeps the trust chain (operator, accounts, signing keys) in an embedded store with every
//! seed sealed under a master key, signs JWTs on demand, writes the nats-server config, and
//! serves over one NATS connection as a user of the AUTH (callout) account.
//!
//! # Layout
//!
//! | module | job |
//! | --- | --- |
//! | [`claims`] | NATS JWT v2: encode, decode, verify; creds files |
//! | [`keys`] | nkeys by role; sealed seeds; a `Seed` type that never prints |
//! | [`vault`] | the master key and XChaCha20-Poly1305 sealing of secrets at rest |
//! | [`model`] | records (operator, account, user, role, pending push) and validated names |
//! | [`store`] | the `Store` boundary and its sled backend; atomic, durable batches |
//! | [`policy`] | pure: user + role -> permissions |
//! | [`trust`] | pure: records -> signed operator, account, user JWTs |
//! | [`authority`] | store + master key: signs from stored records |
//! | [`bootstrap`] | `init`: the topology, and the files for the server and the operators |
//! | [`server_config`] | renders `nats-config/nats-server.conf` |
//! | [`nats_server`] | finds and runs a local nats-server (`up`, tests) |
//! | [`connection`] | the service's one NATS connection |
//! | [`app`] | `serve`: runs the service until shutdown |
//! | [`cli`] | the command line |
#![forbid(unsafe_code)]

pub mod api;
pub mod api_gate;
pub mod app;
pub mod authority;
pub mod bootstrap;
pub mod callout;
pub mod claims;
pub mod cli;
pub mod client;
pub mod connection;
pub mod keys;
pub mod manage;
pub mod model;
pub mod names;
pub mod nats_server;
pub mod password;
pub mod policy;
pub mod publisher;
pub mod queue;
pub mod server_api;
pub mod server_config;
pub mod service;
pub mod store;
pub mod token;
pub mod trust;
pub mod vault;
