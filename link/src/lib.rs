//! The collector's libzmq plumbing (also used by tests that play agents
//! with raw libzmq sockets): checking that the linked libzmq can do CURVE,
//! putting keys on sockets, and decoding socket monitor events (how a
//! failed handshake becomes a log line instead of silence). The agent does
//! not use libzmq; see the zmtp crate.
//!
//! It owns no sockets and no threads; each binary's socket thread does.

pub mod curve;
pub mod monitor;

pub use curve::{LinkError, ZAP_DOMAIN, apply_client, apply_server, require_curve};
pub use monitor::{Event, EventKind, attach_monitor, read_event};
