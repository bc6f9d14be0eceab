//! What several policies call, apart from the policies themselves: the pass planners that give
//! every plan of a family its shape, the caches and eviction orders that keep plans honest,
//! the resident set, placement, prediction and the trace's future for offline bounds.
//!
//! Nothing here decides *what* to load: that is a policy's job (`policy::moe`,
//! `policy::neuron`). This is what a policy file calls so that it reads like its paper.

pub mod cache;
pub mod future;
pub mod load_ops;
pub mod mmap_fault;
pub mod pass;
pub mod placement;
pub mod prediction;
pub mod resident;
pub mod tensor_map;
