//! The curvemon agent as a library, so that its parts can be tested alone.
//!
//! The agent is one thread with one event loop ([`run`]): it owns the
//! connection to the collector (ZMTP with CURVE, from the zmtp crate; no
//! libzmq, no I/O thread), the StatsD sockets and the signal pipe, polls
//! them together without ever blocking, samples `/proc` on its interval and
//! decides, through the pure [`session::Session`], when the link has gone
//! quiet and must be rebuilt. One thread is enough: a full collection of
//! the default families takes well under a millisecond. Helper threads
//! exist only for what cannot be made non-blocking: a name lookup while it
//! runs, scrapes of local pages, availability check runs, a `statvfs` of a
//! network mount.
//!
//! Layout:
//! - [`cli`] and [`config`]: flags, and the validated values `run` takes.
//! - [`roots`]: the only doors to `/proc`, `/sys` and mount points, so tests can point them at fixture trees.
//! - [`collectors`]: one module per `/proc` family, behind one trait.
//! - [`sampler`]: runs the collectors and lays out the schema and values.
//! - [`model`]: the host inventory sent on request.
//! - [`sources`] and [`apps`]: application metrics (StatsD, scraped pages),
//!   aggregated per interval into declared series.
//! - [`checks`]: availability checks of the services applications depend
//!   on (HTTP, TCP, PostgreSQL, Redis, AMQP), over [`net`] and [`http1`].
//! - [`link`]: the connection to the collector as a non-blocking state
//!   machine; [`session`] and [`backoff`]: pure decisions about it.
//! - [`run`]: the loop and shutdown.
//! - [`signals`]: SIGTERM and SIGINT as a pollable file descriptor.

pub mod apps;
pub mod backoff;
pub mod checks;
pub mod cli;
pub mod collectors;
pub mod config;
pub mod delivery;
pub mod http1;
pub mod link;
pub mod model;
pub mod net;
pub mod options;
pub mod roots;
pub mod run;
pub mod sampler;
pub mod session;
pub mod signals;
pub mod sources;
pub mod spool;

pub use config::Config;
pub use run::run;
