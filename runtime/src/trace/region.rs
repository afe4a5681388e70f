//! Naming a region: the id every `Access` carries, and the trait of
//! everything that names one (`Buffer`, tracked ranges, typed values).

use serde::{Deserialize, Serialize};

/// Identifies one region (a guarded buffer or a tracked range) within a
/// process. Ids are never reused while the process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegionId(pub u32);

/// Anything that names a region: a `Buffer`, a tracked range, or the id.
pub trait Region {
    /// The region's id.
    fn region_id(&self) -> RegionId;
}

impl Region for RegionId {
    fn region_id(&self) -> RegionId {
        *self
    }
}
