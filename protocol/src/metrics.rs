//! The periodic sample: values only, in the order of the model's schema.

use serde::{Deserialize, Serialize};

/// One sample of every series in the schema named by `schema_revision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Increases by one per metrics message for the life of the agent
    /// process, across reconnects; a gap means lost samples.
    pub seq: u64,
    /// When the sample was taken, Unix milliseconds (agent's clock).
    pub taken_at_ms: u64,
    /// The [`crate::Schema::revision`] these values follow; a collector that
    /// does not know it asks for the model.
    pub schema_revision: u64,
    /// One value per series, in schema order; NaN where a value could not be
    /// read this time (the family's success gauge says why).
    pub values: Vec<f64>,
}
