//! Forwarding the fleet's samples to systems that keep them beyond one
//! collector: Prometheus remote write ([`remote_write`]) to Prometheus,
//! VictoriaMetrics, Mimir or Thanos, from the store's export journal
//! ([`crate::store::journal`]), so an outage of the receiver or a restart
//! of the collector loses nothing within each target's queue bound.

pub(crate) mod expose;
pub mod prompb;
pub mod remote_write;
pub mod series;
pub mod target;
pub mod text;
