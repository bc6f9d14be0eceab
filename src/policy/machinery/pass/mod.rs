//! Pass planners: the shape every plan of a family shares (which ops, in which order, after
//! which others), with the policy deciding only how each demanded unit is supplied.
//!
//! - [`moe`]: per layer mixer → router → each demanded expert's supply and compute → join.
//! - [`neuron`]: per layer mixer → each demanded neuron cluster's supply and compute → join.
//! - [`resident_ops`]: the compute ops whose weights never leave memory (mixer, router, dense
//!   FFN, LM head), shared by both.

pub mod moe;
pub mod neuron;
pub mod resident_ops;
