//! Property tests of the LUT kernels: accuracy against the exact product of the quantized
//! weights, bit-identity of the scalar, AVX2 and AVX-512 paths and of thread counts, and equality of
//! the sparse, GEMM and serialized variants with the dense GEMV.
//!
//! # The accuracy bound
//!
//! The only approximation in the kernel is the int8 rounding of table entries: an entry is
//! off by at most half a table step, `ls/2`, where `ls` is the table scale of its activation
//! group (`2 · half_scale`). A weight group contributes `s · ½ · Σ_planes 2^p · T_p`, so one
//! table-group `u` of `F` activations (F/4 lookups per plane) inside weight group `g` is off by
//! at most
//!
//! ```text
//! |s_g| · ½ · Σ_p 2^p · (F/4) · ls_u/2  =  |s_g| · ls_u · (2^bits − 1) · F/16.
//! ```
//!
//! On top of that come f32 rounding errors (table entries, activation sums, the two FMAs per
//! group), each a few units of 2^-24 of the magnitude
//! `Mag = Σ_u (|s_g|·h + |c_g|) · Σ_{k∈u} |x_k|`; we allow `(F + 4·units + 16) · 2^-23 · Mag`.

use edgesim::kernels::f16::f16_to_f32;
use edgesim::kernels::{
    gemm, gemv, gemv_cols, gemv_rows, reference, ActivationTable, GroupSize, KernelError,
    KernelOptions, KernelPath, PackedMatrix, PackedView, QuantScheme, QuantizedMatrix, WeightBits,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    matrix: QuantizedMatrix,
    packed: PackedMatrix,
    x: Vec<f32>,
    table: ActivationTable,
}

fn scheme(bits_index: usize, group: GroupSize) -> QuantScheme {
    // Index 5 is ternary (stored as 2 bits).
    match WeightBits::ALL.get(bits_index) {
        Some(&bits) => QuantScheme::MinMax { bits, group },
        None => QuantScheme::Ternary { group },
    }
}

fn make_case(
    rows: usize,
    groups: usize,
    group: GroupSize,
    table_group: GroupSize,
    bits_index: usize,
    seed: u64,
) -> Case {
    let cols = groups * group.get();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Rows of different magnitudes and activations with an outlier channel, as in LLMs.
    let weights: Vec<f32> = (0..rows * cols)
        .map(|i| rng.gen_range(-1.0f32..1.0) * (1.0 + (i / cols % 3) as f32))
        .collect();
    let mut x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let outlier = rng.gen_range(0..cols);
    x[outlier] *= 20.0;
    let matrix = scheme(bits_index, group)
        .quantize(&weights, rows, cols)
        .expect("quantize");
    let packed = PackedMatrix::pack(&matrix);
    let table = ActivationTable::build(&x, table_group).expect("table");
    Case {
        matrix,
        packed,
        x,
        table,
    }
}

fn run(case: &Case, options: KernelOptions) -> Vec<f32> {
    let mut y = vec![f32::NAN; case.matrix.rows()];
    gemv(&case.packed.view(), &case.table, &mut y, options).expect("gemv");
    y
}

/// The bound of the module docs for one row.
fn error_bound(case: &Case, row: usize) -> f64 {
    let m = &case.matrix;
    let unit = case.table.group().get();
    let units = m.cols() / unit;
    let mut table_error = 0.0f64;
    let mut magnitude = 0.0f64;
    for u in 0..units {
        let g = u * unit / m.group().get();
        let scale = f16_to_f32(m.scale_bits(row, g)).abs() as f64;
        let centre = f16_to_f32(m.centre_bits(row, g)).abs() as f64;
        let table_scale = 2.0 * case.table.half_scales()[u] as f64;
        table_error += scale * table_scale * m.bits().max_code() as f64 * unit as f64 / 16.0;
        let abs_x: f64 = case.x[u * unit..(u + 1) * unit]
            .iter()
            .map(|a| a.abs() as f64)
            .sum();
        magnitude += (scale * m.bits().code_midpoint() as f64 + centre) * abs_x;
    }
    let rounding = (unit + 4 * units + 16) as f64 * 2f64.powi(-23) * magnitude;
    table_error + rounding
}

fn case_strategy() -> impl Strategy<Value = (usize, usize, usize, bool, usize, u64)> {
    (
        1usize..80,    // rows
        1usize..5,     // groups per row
        0usize..4,     // group size 32/64/96/128
        any::<bool>(), // table group = weight group, or 32
        0usize..6,     // bits 1/2/3/4/8, ternary
        any::<u64>(),  // seed
    )
}

fn group_of(index: usize) -> GroupSize {
    [
        GroupSize::G32,
        GroupSize::G64,
        GroupSize::G96,
        GroupSize::G128,
    ][index]
}

fn build(params: (usize, usize, usize, bool, usize, u64)) -> Case {
    let (rows, groups, group_index, table_is_32, bits_index, seed) = params;
    let group = group_of(group_index);
    let table_group = if table_is_32 { GroupSize::G32 } else { group };
    make_case(rows, groups, group, table_group, bits_index, seed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn lut_gemv_is_within_the_table_quantization_bound(params in case_strategy()) {
        let case = build(params);
        let exact = reference::gemv_f64(&case.matrix, &case.x);
        let scalar = run(&case, KernelOptions::default().with_path(KernelPath::Scalar));
        for (row, (got, want)) in scalar.iter().zip(&exact).enumerate() {
            let bound = error_bound(&case, row);
            prop_assert!(
                (*got as f64 - want).abs() <= bound,
                "row {}: got {}, exact {}, bound {}", row, got, want, bound
            );
        }
    }

    #[test]
    fn every_path_is_bit_identical_to_the_scalar_path(params in case_strategy()) {
        let case = build(params);
        // End to end on each path: table built and lookups run by the scalar code, then by
        // every SIMD path this CPU has (AVX2, AVX-512, AVX-512 with VBMI), one tile at a time
        // and in two-tile passes (the GEMV runs pairs of tiles, the GEMM single ones).
        let mut slow_table = ActivationTable::empty(case.table.group());
        slow_table.rebuild_with(&case.x, KernelPath::Scalar).expect("table");
        let mut scalar = vec![0.0f32; case.matrix.rows()];
        let scalar_options = KernelOptions::default().with_path(KernelPath::Scalar);
        gemv(&case.packed.view(), &slow_table, &mut scalar, scalar_options).expect("gemv");
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for path in KernelPath::available() {
            let mut fast_table = ActivationTable::empty(case.table.group());
            fast_table.rebuild_with(&case.x, path).expect("table");
            prop_assert_eq!(fast_table.entries(), slow_table.entries(), "{:?} table", path);
            let mut fast = vec![0.0f32; case.matrix.rows()];
            let fast_options = KernelOptions::default().with_path(path);
            gemv(&case.packed.view(), &fast_table, &mut fast, fast_options).expect("gemv");
            prop_assert_eq!(bits(&scalar), bits(&fast), "{:?} gemv", path);
            let mut single = vec![0.0f32; case.matrix.rows()];
            gemm(
                &case.packed.view(),
                std::slice::from_ref(&fast_table),
                &mut single,
                fast_options,
            )
            .expect("gemm");
            prop_assert_eq!(bits(&scalar), bits(&single), "{:?} one-tile gemm", path);
        }
    }

    #[test]
    fn thread_counts_give_identical_results(params in case_strategy()) {
        let case = build(params);
        let one = run(&case, KernelOptions::threads(1));
        for threads in [2, 3] {
            let many = run(&case, KernelOptions::threads(threads));
            prop_assert_eq!(
                one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                many.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "threads {}", threads
            );
        }
    }

    #[test]
    fn row_sparse_gemv_equals_the_dense_rows(
        params in case_strategy(),
        picks in proptest::collection::vec(any::<u32>(), 0..40),
        threads in 1usize..4,
    ) {
        let case = build(params);
        let rows: Vec<usize> = picks.iter().map(|p| *p as usize % case.matrix.rows()).collect();
        let dense = run(&case, KernelOptions::default());
        let mut sparse = vec![f32::NAN; rows.len()];
        gemv_rows(&case.packed.view(), &case.table, &rows, &mut sparse, KernelOptions::threads(threads))
            .expect("gemv_rows");
        for (value, row) in sparse.iter().zip(&rows) {
            prop_assert_eq!(value.to_bits(), dense[*row].to_bits(), "row {}", row);
        }
    }

    #[test]
    fn column_sparse_gemv_equals_the_dense_kernel_on_masked_input(
        params in case_strategy(),
        keep in proptest::collection::vec(any::<bool>(), 1..9),
    ) {
        let case = build(params);
        let cols = case.matrix.cols();
        // Keep or drop whole runs of 16 columns, so some activation groups become all zero.
        let active: Vec<usize> = (0..cols).filter(|c| keep[(c / 16) % keep.len()]).collect();
        let mut masked = vec![0.0f32; cols];
        for &c in &active {
            masked[c] = case.x[c];
        }
        let table = ActivationTable::build(&masked, case.matrix.group()).expect("table");
        let mut dense = vec![0.0f32; case.matrix.rows()];
        gemv(&case.packed.view(), &table, &mut dense, KernelOptions::default()).expect("gemv");
        let mut sparse = vec![f32::NAN; case.matrix.rows()];
        gemv_cols(&case.packed.view(), &case.x, &active, &mut sparse, KernelOptions::threads(2))
            .expect("gemv_cols");
        prop_assert_eq!(
            dense.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            sparse.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // And it is the product restricted to the active columns, within the bound.
        let masked_case = Case {
            matrix: case.matrix.clone(),
            packed: case.packed.clone(),
            x: masked.clone(),
            table,
        };
        let exact = reference::gemv_f64(&case.matrix, &masked);
        for (row, (got, want)) in sparse.iter().zip(&exact).enumerate() {
            let bound = error_bound(&masked_case, row);
            prop_assert!((*got as f64 - want).abs() <= bound, "row {}: {} vs {}", row, got, want);
        }
    }

    #[test]
    fn gemm_equals_one_gemv_per_vector(params in case_strategy(), vectors in 1usize..5, threads in 1usize..4) {
        let case = build(params);
        let cols = case.matrix.cols();
        let rows = case.matrix.rows();
        let mut rng = ChaCha8Rng::seed_from_u64(params.5 ^ 0x5eed);
        let tables: Vec<ActivationTable> = (0..vectors)
            .map(|_| {
                let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                ActivationTable::build(&x, case.table.group()).expect("table")
            })
            .collect();
        let mut y = vec![f32::NAN; vectors * rows];
        gemm(&case.packed.view(), &tables, &mut y, KernelOptions::threads(threads)).expect("gemm");
        for (v, table) in tables.iter().enumerate() {
            let mut single = vec![0.0f32; rows];
            gemv(&case.packed.view(), table, &mut single, KernelOptions::default()).expect("gemv");
            prop_assert_eq!(
                &y[v * rows..(v + 1) * rows].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                &single.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn serialized_bytes_compute_the_same_result(params in case_strategy()) {
        let case = build(params);
        let bytes = case.packed.to_bytes();
        let view = PackedView::from_bytes_checked(&bytes).expect("view");
        prop_assert_eq!(view.shape(), case.packed.shape());
        let mut y = vec![0.0f32; case.matrix.rows()];
        gemv(&view, &case.table, &mut y, KernelOptions::default()).expect("gemv");
        prop_assert_eq!(y, run(&case, KernelOptions::default()));
        prop_assert_eq!(view.unpack(), case.matrix.clone());
    }
}

/// Worst case for the int16 accumulators: every weight at its largest code and every
/// activation equal, so every lookup returns +127 and the sums reach their maximum
/// (32 lookups × (2^bits − 1) × 127 per group of 128 columns).
#[test]
fn saturating_inputs_do_not_overflow_the_accumulators() {
    for bits in WeightBits::ALL {
        let (rows, cols) = (32, 256);
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
        let packed = PackedMatrix::pack(&matrix);
        let x = vec![0.5f32; cols];
        let table = ActivationTable::build(&x, GroupSize::G128).unwrap();
        let mut y = vec![0.0f32; rows];
        gemv(&packed.view(), &table, &mut y, KernelOptions::default()).unwrap();
        // Every weight is h = (2^bits − 1)/2, so each row is h · Σx = h · 128.
        let want = bits.code_midpoint() * 128.0;
        for value in &y {
            assert!(
                (value - want).abs() <= want * 1e-5,
                "{bits:?}: {value} vs {want}"
            );
        }
        for path in KernelPath::available() {
            let mut other = vec![0.0f32; rows];
            let options = KernelOptions::default().with_path(path);
            gemv(&packed.view(), &table, &mut other, options).unwrap();
            assert_eq!(other, y, "{bits:?} on {path:?}");
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let case = make_case(40, 2, GroupSize::G64, GroupSize::G64, 1, 9);
    let view = case.packed.view();
    let mut y = vec![0.0f32; 40];

    let mut short = vec![0.0f32; 39];
    assert!(matches!(
        gemv(&view, &case.table, &mut short, KernelOptions::default()),
        Err(KernelError::ShapeMismatch { .. })
    ));
    let other = ActivationTable::build(&vec![1.0; 64], GroupSize::G64).unwrap();
    assert!(matches!(
        gemv(&view, &other, &mut y, KernelOptions::default()),
        Err(KernelError::ShapeMismatch { .. })
    ));
    let coarse = ActivationTable::build(&case.x, GroupSize::G128).unwrap();
    assert!(matches!(
        gemv(&view, &coarse, &mut y, KernelOptions::default()),
        Err(KernelError::TableGroupMismatch { .. })
    ));
    assert!(matches!(
        gemv(&view, &case.table, &mut y, KernelOptions::threads(0)),
        Err(KernelError::ZeroThreads)
    ));
    let mut one = vec![0.0f32; 1];
    assert!(matches!(
        gemv_rows(
            &view,
            &case.table,
            &[40],
            &mut one,
            KernelOptions::default()
        ),
        Err(KernelError::IndexOutOfRange { index: 40, .. })
    ));
    assert!(matches!(
        gemv_cols(&view, &case.x, &[128], &mut y, KernelOptions::default()),
        Err(KernelError::IndexOutOfRange { index: 128, .. })
    ));
    assert!(matches!(
        gemv_cols(&view, &case.x[..64], &[1], &mut y, KernelOptions::default()),
        Err(KernelError::ShapeMismatch { .. })
    ));
    let mut wrong_gemm = vec![0.0f32; 79];
    assert!(matches!(
        gemm(
            &view,
            &[case.table.clone(), case.table.clone()],
            &mut wrong_gemm,
            KernelOptions::default()
        ),
        Err(KernelError::ShapeMismatch { .. })
    ));
    // SmolLM2's width 576 is not a multiple of 128.
    assert!(matches!(
        QuantizedMatrix::quantize_min_max(&vec![0.0; 576], 1, 576, WeightBits::B4, GroupSize::G128),
        Err(KernelError::ColsNotMultipleOfGroup {
            cols: 576,
            group: 128,
            ..
        })
    ));
    assert!(matches!(
        WeightBits::from_bits(6),
        Err(KernelError::UnsupportedBits(6))
    ));
    assert!(matches!(
        GroupSize::new(48),
        Err(KernelError::UnsupportedGroupSize(48))
    ));
}

/// SmolLM2-135M's shapes (hidden 576, FFN 1536) at the widths issue 6 needs.
#[test]
fn smollm2_shapes_work_at_groups_32_and_64() {
    for (rows, cols) in [(64, 576), (32, 1536)] {
        for group in [GroupSize::G32, GroupSize::G64] {
            for bits_index in [0, 1, 2, 3, 4] {
                let case = make_case(rows, cols / group.get(), group, group, bits_index, 3);
                let exact = reference::gemv_f64(&case.matrix, &case.x);
                let y = run(&case, KernelOptions::default());
                for (row, (got, want)) in y.iter().zip(&exact).enumerate() {
                    assert!((*got as f64 - want).abs() <= error_bound(&case, row));
                }
            }
        }
    }
}
