//! The curvemon agent as a library, so that its parts can be tested alone.
//!
//! The agent is one thread with one event loop ([`run`]): it owns the
//! connection to the collector (ZMTP with CURVE, from the zmtp crate; no
//! libzmq, no I/O thread) and the signal pipe, polls them together, samples
//! `/proc` on its interval and decides, through the pure
//! [`session::Session`], when the link has gone quiet and must be rebuilt.
//! One thread is enough: a full collection of the default families takes
//! well under a millisecond.
//!
//! Layout:
//! - [`cli`] and [`config`]: flags, and the validated values `run` takes.
//! - [`roots`]: the only doors to `/proc`, `/sys` and mount points, so tests can point them at fixture trees.
//! - [`collectors`]: one module per `/proc` family, behind one trait.
//! - [`sampler`]: runs the collectors and lays out the schema and values.
//! - [`model`]: the host inventory sent on request.
//! - [`session`] and [`backoff`]: pure decisions about the link.
//! - [`run`]: the connection, the loop and shutdown.
//! - [`signals`]: SIGTERM and SIGINT as a pollable file descriptor.

pub mod backoff;
pub mod cli;
pub mod collectors;
pub mod config;
pub mod model;
pub mod options;
pub mod roots;
pub mod run;
pub mod sampler;
pub mod session;
pub mod signals;

pub use config::Config;
pub use run::run;
