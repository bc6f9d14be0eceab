//! Which instruction sets this CPU has, detected once, and which kernel path a
//! [`KernelPath`](super::KernelPath) request resolves to.
//!
//! The levels are cumulative: a CPU at [`Isa::Avx512Vnni`] can also run the AVX-512, AVX2 and
//! scalar paths, which is how the tests compare every path with the scalar one on one machine.

use std::sync::OnceLock;

use super::error::KernelError;

/// An implementation level of the kernels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen 1 and later).
    Avx2,
    /// AVX2 plus AVX-512 F, BW, VL and DQ (Skylake-SP, Zen 4 and later): 512-bit lookups with
    /// `vpshufb`, 16-bit dot products with `vpmaddwd`.
    Avx512,
    /// AVX-512 plus VNNI, VBMI and GFNI (Ice Lake, Sapphire Rapids, Zen 4 and later): 64-byte
    /// table lookups with `vpermb` (no nibble masking), 8-bit dot products with `vpdpbusd`, and
    /// bit-plane to byte transposes with `vgf2p8affineqb` (the prefill GEMM).
    Avx512Vnni,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni];

    /// The highest level this CPU runs.
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(detect)
    }

    /// Whether this CPU runs this level.
    pub fn available(self) -> bool {
        self <= Isa::detected()
    }

    /// Every level this CPU runs, lowest first.
    pub fn available_levels() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.available()).collect()
    }

    /// The level's name and what it needs, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2 (with fma and f16c)",
            Isa::Avx512 => "avx-512 (f, bw, vl, dq, with avx2, fma and f16c)",
            Isa::Avx512Vnni => "avx-512 with vnni, vbmi and gfni",
        }
    }

    /// This level, or an error naming it when the CPU lacks it.
    pub fn require(self) -> Result<Isa, KernelError> {
        if self.available() {
            Ok(self)
        } else {
            Err(KernelError::PathUnavailable(self.describe()))
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512dq");
    let vnni = avx512
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vbmi")
        && is_x86_feature_detected!("gfni");
    if vnni {
        Isa::Avx512Vnni
    } else if avx512 {
        Isa::Avx512
    } else if avx2 {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_cumulative_and_scalar_always_runs() {
        assert!(Isa::Scalar.available());
        let levels = Isa::available_levels();
        assert_eq!(levels[0], Isa::Scalar);
        assert_eq!(*levels.last().unwrap(), Isa::detected());
        for pair in levels.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for isa in Isa::ALL {
            assert_eq!(isa.require().is_ok(), isa.available(), "{isa:?}");
        }
    }
}
