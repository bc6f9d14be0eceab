//! Property tests of the int8-activation kernels: the 8-bit dot-product kernel on byte-coded
//! matrices (`dot_gemv`, `dot_gemm`) and the prefill GEMM on lookup-layout matrices
//! (`gemm_q8`), for every width and group size.
//!
//! # The accuracy bound
//!
//! Both compute, per row and 32-column block `u` inside weight group `g`, the exact integer
//! `D = 2·Σ q·xq − (2^bits − 1)·Σ xq` and then `y += D·s·(d/2)` and `y += c·Σx` in f32. So
//! against the f64 product of the stored weights `s·(q − h) + c` with the int8 activations
//! `xq·d` in the scale term and the exact activations in the centre term,
//!
//! ```text
//! y_exact = Σ_u [ s_g·(d_u/2)·D_u + c_g·Σx_u ]
//! ```
//!
//! the only error is f32 rounding: the product `s·(d/2)`, the conversion of `D`, two FMAs per
//! block and the sum in f32 (`Σx`), a few units of 2^-24 of `Mag = Σ_u |s_g·(d_u/2)·D_u| +
//! |c_g|·Σ|x_u|` each, plus the accumulated rounding of `y` over the blocks; we allow
//! `(8 + 2·blocks) · 2^-23 · (Mag + Σ_u |s_g|·h·d_u·Σ|xq_u|)`.

use edgesim::kernels::f16::f16_to_f32;
use edgesim::kernels::{
    dot_gemm, dot_gemv, gemm_q8, ByteMatrix, GroupSize, KernelOptions, KernelPath, PackedMatrix,
    Q8Activations, QuantScheme, QuantizedMatrix, WeightBits, Q8_BLOCK,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    matrix: QuantizedMatrix,
    bytes: ByteMatrix,
    packed: PackedMatrix,
    x: Vec<f32>,
    xq: Q8Activations,
}

fn build(params: (usize, usize, usize, usize, u64)) -> Case {
    let (rows, groups, group_index, bits_index, seed) = params;
    let group = [
        GroupSize::G32,
        GroupSize::G64,
        GroupSize::G96,
        GroupSize::G128,
    ][group_index];
    let cols = groups * group.get();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let weights: Vec<f32> = (0..rows * cols)
        .map(|i| rng.gen_range(-1.0f32..1.0) * (1.0 + (i / cols % 3) as f32))
        .collect();
    let mut x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let outlier = rng.gen_range(0..cols);
    x[outlier] *= 20.0;
    let scheme = match WeightBits::ALL.get(bits_index) {
        Some(&bits) => QuantScheme::MinMax { bits, group },
        None => QuantScheme::Ternary { group },
    };
    let matrix = scheme.quantize(&weights, rows, cols).expect("quantize");
    Case {
        bytes: ByteMatrix::pack(&matrix),
        packed: PackedMatrix::pack(&matrix),
        xq: Q8Activations::build(&x).expect("int8 activations"),
        matrix,
        x,
    }
}

fn case_strategy() -> impl Strategy<Value = (usize, usize, usize, usize, u64)> {
    (
        1usize..80,   // rows
        1usize..5,    // groups per row
        0usize..4,    // group size 32/64/96/128
        0usize..6,    // bits 1/2/3/4/8, ternary
        any::<u64>(), // seed
    )
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// The f64 value of the rule in the module docs for `row`, and the allowed rounding error.
fn exact_and_bound(case: &Case, row: usize) -> (f64, f64) {
    let m = &case.matrix;
    let blocks = m.cols() / Q8_BLOCK;
    let h = m.bits().code_midpoint() as f64;
    let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
    for u in 0..blocks {
        let g = u * Q8_BLOCK / m.group().get();
        let scale = f16_to_f32(m.scale_bits(row, g)) as f64;
        let centre = f16_to_f32(m.centre_bits(row, g)) as f64;
        let d = 2.0 * case.xq.half_scales()[u] as f64;
        let columns = u * Q8_BLOCK..(u + 1) * Q8_BLOCK;
        let scaled: f64 = columns
            .clone()
            .map(|c| (m.code(row, c) as f64 - h) * case.xq.values()[c] as f64)
            .sum();
        let abs_q: f64 = columns
            .clone()
            .map(|c| (case.xq.values()[c] as f64).abs())
            .sum();
        let abs_x: f64 = columns.clone().map(|c| (case.x[c] as f64).abs()).sum();
        let sum: f64 = case.xq.sums()[u] as f64;
        exact += scale * d * scaled + centre * sum;
        magnitude +=
            (scale * d * scaled).abs() + centre.abs() * abs_x + scale.abs() * h * d * abs_q;
    }
    (exact, (8 + 2 * blocks) as f64 * 2f64.powi(-23) * magnitude)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn dot_and_prefill_kernels_are_the_int8_product_up_to_f32_rounding(params in case_strategy()) {
        let case = build(params);
        let rows = case.matrix.rows();
        let scalar = KernelOptions::default().with_path(KernelPath::Scalar);
        let mut dot = vec![f32::NAN; rows];
        dot_gemv(&case.bytes.view(), &case.xq, &mut dot, scalar).expect("dot");
        let mut prefill = vec![f32::NAN; rows];
        gemm_q8(&case.packed.view(), std::slice::from_ref(&case.xq), &mut prefill, scalar)
            .expect("prefill");
        prop_assert_eq!(bits_of(&dot), bits_of(&prefill));
        for (row, got) in dot.iter().enumerate() {
            let (exact, bound) = exact_and_bound(&case, row);
            prop_assert!(
                (*got as f64 - exact).abs() <= bound,
                "row {}: got {}, exact {}, bound {}", row, got, exact, bound
            );
        }
    }

    #[test]
    fn every_path_is_bit_identical_to_the_scalar_path(params in case_strategy(), vectors in 1usize..4) {
        let case = build(params);
        let rows = case.matrix.rows();
        let cols = case.matrix.cols();
        let mut rng = ChaCha8Rng::seed_from_u64(params.4 ^ 0xd07);
        let inputs: Vec<Vec<f32>> = (0..vectors)
            .map(|_| (0..cols).map(|_| rng.gen_range(-3.0f32..3.0)).collect())
            .collect();
        let quantize = |path: KernelPath| -> Vec<Q8Activations> {
            inputs
                .iter()
                .map(|x| {
                    let mut q = Q8Activations::default();
                    q.rebuild_with(x, path).expect("int8 activations");
                    q
                })
                .collect()
        };
        let slow = quantize(KernelPath::Scalar);
        let scalar = KernelOptions::default().with_path(KernelPath::Scalar);
        let mut want = vec![0.0f32; vectors * rows];
        dot_gemm(&case.bytes.view(), &slow, &mut want, scalar).expect("dot");
        for path in KernelPath::available() {
            let fast = quantize(path);
            prop_assert_eq!(&fast, &slow, "{:?} int8 activations", path);
            let options = KernelOptions::default().with_path(path);
            let mut dot = vec![f32::NAN; vectors * rows];
            dot_gemm(&case.bytes.view(), &fast, &mut dot, options).expect("dot");
            prop_assert_eq!(bits_of(&dot), bits_of(&want), "{:?} dot_gemm", path);
            let mut prefill = vec![f32::NAN; vectors * rows];
            gemm_q8(&case.packed.view(), &fast, &mut prefill, options).expect("prefill");
            prop_assert_eq!(bits_of(&prefill), bits_of(&want), "{:?} gemm_q8", path);
        }
    }

    #[test]
    fn threads_and_batching_change_no_bit(params in case_strategy(), vectors in 1usize..5, threads in 2usize..4) {
        let case = build(params);
        let rows = case.matrix.rows();
        let cols = case.matrix.cols();
        let mut rng = ChaCha8Rng::seed_from_u64(params.4 ^ 0xba7);
        let xs: Vec<Q8Activations> = (0..vectors)
            .map(|_| {
                let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                Q8Activations::build(&x).expect("int8 activations")
            })
            .collect();
        for name in ["dot", "prefill"] {
            let run = |x: &[Q8Activations], y: &mut [f32], options: KernelOptions| {
                if name == "dot" {
                    dot_gemm(&case.bytes.view(), x, y, options)
                } else {
                    gemm_q8(&case.packed.view(), x, y, options)
                }
            };
            let mut one = vec![f32::NAN; vectors * rows];
            run(&xs, &mut one, KernelOptions::threads(1)).expect("one thread");
            let mut many = vec![f32::NAN; vectors * rows];
            run(&xs, &mut many, KernelOptions::threads(threads)).expect("threads");
            prop_assert_eq!(bits_of(&one), bits_of(&many), "{} on {} threads", name, threads);
            for (v, x) in xs.iter().enumerate() {
                let mut single = vec![f32::NAN; rows];
                run(std::slice::from_ref(x), &mut single, KernelOptions::threads(1)).expect("one");
                prop_assert_eq!(bits_of(&single), bits_of(&one[v * rows..(v + 1) * rows]), "{} vector {}", name, v);
            }
        }
    }
}

/// The largest integer sums: every code at its maximum and every activation at ±127 (the
/// block maximum), so `Σ q·xq` reaches 32 · 255 · 127 per block at 8 bits; the results must
/// be the exact products (no int32 wrap in the kernels, no int16 saturation on the AVX2 path).
#[test]
fn extreme_codes_and_activations_do_not_overflow() {
    let (rows, cols) = (48, 256);
    for bits in WeightBits::ALL {
        let max = bits.max_code() as u8;
        let matrix = QuantizedMatrix::from_parts(
            rows,
            cols,
            bits,
            GroupSize::G128,
            vec![max; rows * cols],
            vec![0x3c00; rows * 2], // scale 1.0
            vec![0; rows * 2],      // centre 0
        )
        .unwrap();
        for sign in [1.0f32, -1.0] {
            let x = vec![sign; cols];
            let xq = Q8Activations::build(&x).unwrap();
            // Each weight is h = (2^bits − 1)/2, each activation ±1: the product is ±h·cols.
            let want = sign * bits.code_midpoint() * cols as f32;
            for path in KernelPath::available() {
                let options = KernelOptions::default().with_path(path);
                let mut dot = vec![0.0; rows];
                dot_gemv(&ByteMatrix::pack(&matrix).view(), &xq, &mut dot, options).unwrap();
                let mut prefill = vec![0.0; rows];
                gemm_q8(
                    &PackedMatrix::pack(&matrix).view(),
                    std::slice::from_ref(&xq),
                    &mut prefill,
                    options,
                )
                .unwrap();
                assert!(dot.iter().all(|&v| v == want), "{bits:?} {path:?}: {dot:?}");
                assert_eq!(dot, prefill, "{bits:?} {path:?}");
            }
        }
    }
}

#[test]
fn mismatched_inputs_are_errors() {
    let matrix =
        QuantizedMatrix::quantize_min_max(&[0.5; 64 * 3], 3, 64, WeightBits::B8, GroupSize::G64)
            .unwrap();
    let bytes = ByteMatrix::pack(&matrix);
    let packed = PackedMatrix::pack(&matrix);
    let narrow = Q8Activations::build(&[1.0; 32]).unwrap();
    let right = Q8Activations::build(&[1.0; 64]).unwrap();
    let options = KernelOptions::default();
    assert!(dot_gemv(&bytes.view(), &narrow, &mut [0.0; 3], options).is_err());
    assert!(dot_gemv(&bytes.view(), &right, &mut [0.0; 2], options).is_err());
    assert!(gemm_q8(&packed.view(), &[narrow], &mut [0.0; 3], options).is_err());
    assert!(gemm_q8(
        &packed.view(),
        std::slice::from_ref(&right),
        &mut [0.0; 4],
        options
    )
    .is_err());
    assert!(dot_gemv(
        &bytes.view(),
        &right,
        &mut [0.0; 3],
        KernelOptions::threads(0)
    )
    .is_err());
    assert!(Q8Activations::build(&[1.0; 40]).is_err());
}
