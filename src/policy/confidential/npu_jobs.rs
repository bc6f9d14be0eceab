//! How many NPU jobs one matrix product becomes on the RK3588, as TZ-LLM's NPU backend tiles it.
//!
//! TZ-LLM's TEE build drives the NPU through a register-level backend
//! (`TZ-LLM/llama.cpp@158b3bd`, `ggml/src/ggml-rknpu-re.cpp`, the `matmul_kernel`
//! constructor). It cuts an `m × k` by `k × n` product into tiles: `n` is split over the three
//! NPU cores and then into tiles of at most 4096, `k` into tiles of at most 4096 (aligned to
//! 32), and `m` into tiles whose height depends on the `k` tile (INT8 table: `k ≤ 2048` → 160
//! rows, `k ≤ 3584` → 72, larger → 64). One submission runs one tile on each core, so a
//! product is `⌈k/K⌉ · ⌈m/M⌉ · ⌈(n/3)/N⌉` submissions. Every submission is one secure NPU job:
//! with the co-driver, one world-switch pair (TZ-LLM §4.3; `TZ-LLM/tee_os_kernel@86807b2`,
//! `rknpu-driver.c`, `npu_enter_secure`/`npu_exit_secure`, one pair per multi-core submission).
//!
//! Checked against the counts read from that code for a decode token (m = 1): 384 submissions
//! for Llama-3-8B, 324 for Qwen2.5-3B, 179 for TinyLlama-1.1B, 195 for Phi-3-mini with its fused
//! projections (tests below). The `m` tiling reproduces the prefill counts of Llama-3-8B (768,
//! 1536, 3072 at m = 128, 256, 512); for models whose `k` tile falls between 3584 and 4064 the
//! code's row height is not known to us and 64 is taken.

/// Largest tile along `k` and along each core's share of `n`.
pub const TILE_MAX: u64 = 4096;
/// NPU cores one submission spreads a tile over.
pub const NPU_CORES: u64 = 3;
/// Tile sizes are multiples of this.
const ALIGN: u64 = 32;

/// The tile size that cuts `x` into the fewest tiles of at most [`TILE_MAX`], aligned.
fn tile(x: u64) -> u64 {
    let parts = x.div_ceil(TILE_MAX).max(1);
    x.div_ceil(parts).div_ceil(ALIGN) * ALIGN
}

/// Rows of `m` per tile for 8-bit weights, given the `k` tile.
fn m_tile_int8(k_tile: u64) -> u64 {
    if k_tile <= 2048 {
        160
    } else if k_tile <= 3584 {
        72
    } else {
        64
    }
}

/// Rows the NPU computes for `m` activation rows against a `k`-deep weight: `m` rounded up
/// to whole tiles, since every task runs a full tile (a 25-token prompt costs a 64-row
/// tile on a 4096-deep product). A single row (decode) is not padded: the code keeps M = 1.
pub fn padded_rows(m: u64, k: u64) -> u64 {
    if m <= 1 {
        return 1;
    }
    let tile_rows = m_tile_int8(tile(k.max(1)));
    m.div_ceil(tile_rows) * tile_rows
}

/// NPU submissions for an `m × k` activation times a `k × n` weight.
pub fn submissions(m: u64, k: u64, n: u64) -> u64 {
    let (m, k, n) = (m.max(1), k.max(1), n.max(1));
    let k_tiles = k.div_ceil(TILE_MAX);
    let n_per_core = n.div_ceil(NPU_CORES);
    let n_tiles = n_per_core.div_ceil(TILE_MAX);
    let m_tiles = m.div_ceil(m_tile_int8(tile(k)));
    k_tiles * m_tiles * n_tiles
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per layer (Q, K, V, O, gate, up, down) at `m` tokens.
    fn layer(m: u64, hidden: u64, q: u64, kv: u64, ffn: u64) -> u64 {
        submissions(m, hidden, q)
            + 2 * submissions(m, hidden, kv)
            + submissions(m, q, hidden)
            + 2 * submissions(m, hidden, ffn)
            + submissions(m, ffn, hidden)
    }

    #[test]
    fn decode_counts_match_the_artifact() {
        // Llama-3-8B: 32 layers, hidden 4096, 8 KV heads of 128, FFN 14336; LM head on the CPU.
        assert_eq!(32 * layer(1, 4096, 4096, 1024, 14336), 384);
        // Qwen2.5-3B: 36 layers, hidden 2048, 2 KV heads of 128, FFN 11008.
        assert_eq!(36 * layer(1, 2048, 2048, 256, 11008), 324);
        // TinyLlama-1.1B: 22 layers, hidden 2048, 4 KV heads of 64, FFN 5632, + LM head 32000.
        assert_eq!(
            22 * layer(1, 2048, 2048, 256, 5632) + submissions(1, 2048, 32000),
            179
        );
        // Phi-3-mini: fused QKV (3 x 3072) and gate_up (2 x 8192), + LM head 32064.
        let phi = submissions(1, 3072, 9216)
            + submissions(1, 3072, 3072)
            + submissions(1, 3072, 16384)
            + submissions(1, 8192, 3072);
        assert_eq!(32 * phi + submissions(1, 3072, 32064), 195);
    }

    #[test]
    fn prompts_are_padded_to_whole_tiles() {
        assert_eq!(padded_rows(1, 4096), 1);
        assert_eq!(padded_rows(25, 4096), 64);
        assert_eq!(padded_rows(64, 4096), 64);
        assert_eq!(padded_rows(65, 4096), 128);
        assert_eq!(padded_rows(100, 2048), 160);
        assert_eq!(padded_rows(100, 14336), 144); // k tile 3584: 72 rows
    }

    #[test]
    fn llama_prefill_counts_match_the_artifact() {
        for (m, want) in [(128, 768), (256, 1536), (512, 3072)] {
            assert_eq!(32 * layer(m, 4096, 4096, 1024, 14336), want, "m = {m}");
        }
    }
}
