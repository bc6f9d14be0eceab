//! What a policy is given, what it reports, and how it fails.

use crate::hw::DeviceProfile;
use crate::model::{ModelGeometry, Precision};
use crate::policy::machinery::load_ops::LoadOps;
use crate::units::human_bytes;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// The inputs every policy is built from.
#[derive(Clone, Debug)]
pub struct PolicyContext {
    pub model: Arc<ModelGeometry>,
    pub device: Arc<DeviceProfile>,
    /// Memory the policy may hold, in bytes: resident weights, KV cache and caches together.
    pub budget_bytes: u64,
    /// Precision of the weights that stay resident (attention, routers, embeddings).
    pub resident_precision: Precision,
    /// Precision of the offloaded weights' main copy (the "high" precision of HOBBIT).
    pub offload_precision: Precision,
    /// Longest context a sequence reaches; the KV cache is sized for it.
    pub max_context: u32,
    /// Seed for any random choice a policy makes.
    pub seed: u64,
    /// The policy's own parameters (`null` when none are given); each policy parses and
    /// checks them, rejecting unknown keys.
    pub params: serde_json::Value,
    /// How the policy's loads become ops: [`plain`](crate::policy::machinery::load_ops::plain) (Alloc → Read) unless a wrapper
    /// family (the confidential one) replaces it before building the inner policy.
    pub load_ops: Arc<dyn LoadOps>,
}

impl PolicyContext {
    /// Bytes that must stay resident whatever the policy does: every non-FFN weight at the
    /// resident precision, plus the KV cache for `max_context` tokens.
    pub fn non_ffn_resident_bytes(&self) -> u64 {
        self.resident_precision
            .bytes_for(self.model.non_ffn_params())
            + self.model.kv_bytes_per_token() * self.max_context as u64
    }

    /// Checks that `required` bytes fit the budget, with a message that says how much is needed.
    pub fn require_budget(&self, required: u64, what: &str) -> Result<(), PolicyError> {
        if required > self.budget_bytes {
            return Err(PolicyError::BudgetTooSmall {
                required,
                budget: self.budget_bytes,
                what: what.to_string(),
            });
        }
        Ok(())
    }
}

/// Memory a policy holds, split by purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryUse {
    /// Always-resident weights and the KV cache.
    pub resident_bytes: u64,
    /// Cached offloadable weights (experts, neurons).
    pub cache_bytes: u64,
}

impl MemoryUse {
    pub fn total(&self) -> u64 {
        self.resident_bytes + self.cache_bytes
    }
}

/// Counters every offloading policy keeps. Precision-indexed arrays use
/// [`Precision::index`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Offloadable units (experts, neurons) a pass needed.
    pub lookups: u64,
    /// Of those, found in memory.
    pub hits: u64,
    /// Loaded on demand, with the pass waiting.
    pub misses: u64,
    /// Loaded ahead of need.
    pub prefetches: u64,
    /// Prefetched units that were then used before eviction.
    pub prefetch_used: u64,
    pub evictions: u64,
    /// Expert invocations (tokens routed to an expert) computed at each precision; for
    /// neuron policies, cluster computes (one per demanded cluster and pass).
    pub served_by_precision: [u64; 5],
    /// Expert invocations skipped (not computed).
    pub skipped: u64,
    /// Sum of gate weights of all invocations, and of those served below the high precision
    /// or skipped: their ratio is the accuracy proxy of mixed-precision policies.
    pub gate_weight_total: f64,
    pub gate_weight_degraded: f64,
}

impl Counters {
    pub fn hit_rate(&self) -> f64 {
        if self.lookups == 0 {
            0.0
        } else {
            self.hits as f64 / self.lookups as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PolicyError {
    BudgetTooSmall {
        required: u64,
        budget: u64,
        what: String,
    },
    /// The pass does not fit the model (wrong layer count, expert id out of range).
    BadPass(String),
    /// A parameter is missing, unknown or out of range.
    BadParameter(String),
    /// The device lacks what the policy needs (an accelerator, a TEE).
    Unsupported(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::BudgetTooSmall {
                required,
                budget,
                what,
            } => write!(
                f,
                "memory budget {} ({budget} bytes) is smaller than {what}: {} ({required} bytes) must stay resident",
                human_bytes(*budget),
                human_bytes(*required)
            ),
            PolicyError::BadPass(m) => write!(f, "bad forward pass: {m}"),
            PolicyError::BadParameter(m) => write!(f, "bad policy parameter: {m}"),
            PolicyError::Unsupported(m) => write!(f, "unsupported on this device: {m}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Parses a policy's parameters (`null` means all defaults), rejecting unknown keys with the
/// policy's name in the message.
pub fn parse_params<T: serde::de::DeserializeOwned + Default>(
    policy: &str,
    params: &serde_json::Value,
) -> Result<T, PolicyError> {
    if params.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(params.clone()).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "params".to_string(),
            p => format!("params.{p}"),
        };
        PolicyError::BadParameter(format!("policy `{policy}`: field `{field}`: {}", e.inner()))
    })
}
