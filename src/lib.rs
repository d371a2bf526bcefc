//! nats-authd: authentication and account management for NATS, living inside NATS.
//!
//! It keeps the trust chain (operator, accounts, signing keys) in an embedded store with every
//! seed sealed under a master key, signs JWTs on demand, writes the nats-server config, and
//! serves over one NATS connection as a user of the AUTH (callout) account.
//!
//! # Layout
//!
//! From the bottom up: each layer uses only the ones above it in this table.
//!
//! | module | job |
//! | --- | --- |
//! | [`names`] | well-known names: the built-in accounts and users, the server subjects |
//! | [`wire`] | the bit of the NATS client protocol the callout's early subscription speaks itself |
//! | [`model`] | records (operator, account, user, role, token), validated names and subjects |
//! | [`claims`] | NATS JWT v2: encode, decode, verify; creds files |
//! | [`vault`] | the master key, XChaCha20-Poly1305 sealing at rest, the private-file writer |
//! | [`keys`] | nkeys by role; sealed seeds; a `Seed` type that never prints |
//! | [`token`] | API tokens: the `authd_<id>_<secret>` format and minting |
//! | [`store`] | the `Store` boundary, its sled and JetStream backends, the deployment's choice; atomic, durable batches |
//! | [`queue`] | the durable queue of account-JWT pushes, its one owner |
//! | [`instance`] | this process's id among instances sharing a store |
//! | [`lease`] | one claims publisher at a time among instances: a lease record in the store |
//! | [`password`] | argon2id hashing on a bounded blocking pool |
//! | [`policy`] | pure: user + role -> permissions, role templates |
//! | [`trust`] | pure: records -> signed operator, account, user JWTs |
//! | [`authority`] | store + master key: signs from stored records |
//! | [`api`] | the management API as types: the endpoint table, requests and replies |
//! | [`manage`] | the management domain: accounts, users, roles, tokens as plain functions |
//! | [`server_api`] | a client of nats-server's own requests: claims update/delete/lookup/list, kick |
//! | [`connection`] | the service's one NATS connection: failover, failback, state |
//! | [`shared`] | JetStream mode: seeds the shared stream, follows other instances' changes |
//! | [`api_gate`] | keeps management replies and the rare AUTH push apart |
//! | [`publisher`] | drains the push queue to the servers: bursts, backoff, reconcile |
//! | [`callout`] | auth callout: the login decision, sessions to kick, audit, the NATS side |
//! | [`service`] | the micro-service endpoints; `reply` maps domain errors to wire errors |
//! | [`client`] | a client of the management API (CLI, tests, programs) |
//! | [`server_config`] | renders `nats-config/nats-server.conf` |
//! | [`bootstrap`] | `init`: the topology, the files for the server and the operators |
//! | [`nats_server`] | finds and runs a local nats-server (`up`, tests) |
//! | [`local_cluster`] | `up --cluster` and the tests: N servers on one host with routes and JetStream |
//! | [`app`] | `serve`: runs every task until shutdown and waits for them |
//! | [`cli`] | the command line (the binary in `main.rs` only wires it up) |
//!
//! `docs/nats-server-facts.md` in the repository lists the behaviour of nats-server the
//! design rests on, each item checked against nats-server 2.15.1.
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
pub mod instance;
pub mod keys;
pub mod lease;
pub mod local_cluster;
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
pub mod shared;
pub mod store;
pub mod token;
pub mod trust;
pub mod vault;
pub mod wire;
