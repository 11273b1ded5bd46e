//! The config stream server (DESIGN.md 4.5): one bidirectional stream per proxy, incremental responses with
//! removals, per-resource versions, ACK/NACK with at most one response in flight, resume from the versions a
//! reconnecting proxy announces, and per-node filtering ([`view`]).

mod server;
pub mod view;

pub use server::{ConfigService, Sent, Undo, delta};
