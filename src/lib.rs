//! trino-edge: a Pingora-based edge gateway for Trino.
//!
//! Module map: [`config`] (file → validated structs) · [`snapshot`] (immutable routing table behind
//! arc-swap) · [`routing`] (policies and strategies) · [`query_id`] (Trino query ids) · [`stickiness`] (query id → backend) ·
//! [`database`] (the shared database handle) · [`sync`] (database ⇄ snapshot) ·
//! [`proxy`] (the Pingora `ProxyHttp` phases) · [`admin`] (admin listener) · [`reload`] (SIGHUP) · [`health`] (probes) ·
//! [`server`] (assembly) · [`demo`] · [`emulator`] (a Trino-protocol backend for tests and demos).

pub mod admin;
pub mod balance;
pub mod bookkeeping;
pub mod config;
pub mod database;
pub mod demo;
pub mod emulator;
pub mod gateway;
pub mod health;
pub mod history;
pub mod hop;
pub mod hybrid;
pub mod latency_probe;
pub mod lifecycle;
pub mod metrics;
pub mod oauth2;
pub mod passthrough;
pub mod proxy;
pub mod query_id;
pub mod queue;
pub mod reload;
pub mod resolver;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod stickiness;
pub mod store;
pub mod sync;
pub mod tls;
pub mod trino_client;
