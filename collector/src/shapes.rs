//! A schema and what is derived from it, built once per revision and
//! shared by every host that has it: 10,000 hosts with one layout hold
//! one copy of its families, names and labels, not 10,000.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use curvemon_protocol::Schema;

use crate::derive::Layout;

/// One schema revision with its indexes.
#[derive(Debug)]
pub struct Shape {
    /// The families, names and labels.
    pub schema: Schema,
    /// Where the dashboard's values are.
    pub layout: Layout,
    /// Where the services', containers' and process groups' values are.
    pub groups: Arc<crate::groups::Layout>,
}

/// The shapes in use, by revision (held by the hosts; a revision no host
/// uses any more is dropped).
#[derive(Debug, Default)]
pub struct Shapes {
    by_revision: HashMap<u64, Weak<Shape>>,
}

impl Shapes {
    /// The shared shape of `schema`'s revision, made from it if new.
    pub fn intern(&mut self, schema: Schema) -> Arc<Shape> {
        if let Some(shape) = self.by_revision.get(&schema.revision).and_then(Weak::upgrade) {
            return shape;
        }
        // Forget revisions nobody holds before adding one.
        if self.by_revision.len() >= 64 {
            self.by_revision.retain(|_, w| w.strong_count() > 0);
        }
        let shape = Arc::new(Shape {
            layout: Layout::new(&schema),
            groups: Arc::new(crate::groups::Layout::new(&schema)),
            schema,
        });
        self.by_revision.insert(shape.schema.revision, Arc::downgrade(&shape));
        shape
    }

    /// Revisions held by some host.
    pub fn live(&self) -> usize {
        self.by_revision.values().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use curvemon_protocol::{Family, Kind};

    use super::*;

    fn schema(name: &str) -> Schema {
        Schema::new(vec![Family {
            name: name.into(),
            help: String::new(),
            kind: Kind::Gauge,
            series: vec![vec![]],
        }])
    }

    #[test]
    fn one_revision_is_one_shape_while_held() {
        let mut shapes = Shapes::default();
        let a = shapes.intern(schema("node_load1"));
        let b = shapes.intern(schema("node_load1"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = shapes.intern(schema("node_load5"));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(shapes.live(), 2);
        drop((a, b));
        assert_eq!(shapes.live(), 1);
    }
}
