//! Caches of offloaded weights and the orders in which they give up victims.
//!
//! - [`tensor_cache`]: a byte-capacity set of loaded tensors with the bookkeeping every cache
//!   shares (an eviction waits for its entry's load and last use; an allocation waits for the
//!   evictions whose memory it takes). The others are built on it.
//! - [`single_precision`]: experts at one precision, with the current layer's demands and the
//!   unused prefetches pinned, and access records: the state behind `lru`, `lfu`, `fifo`,
//!   `belady`, `mixtral-offloading` and `moe-infinity`.
//! - [`eviction`]: the classical victim orders (LRU, LFU, FIFO, Belady) as scores.
//! - [`cluster_lru`]: neuron clusters in LRU order with constant-time victim choice.
//! - [`page_cache`]: the OS page cache under `mmap`, at page-run granularity.

pub mod cluster_lru;
pub mod eviction;
pub mod page_cache;
pub mod pending_frees;
pub mod single_precision;
pub mod tensor_cache;
