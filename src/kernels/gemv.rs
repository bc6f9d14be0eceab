//! The public lookup kernels: GEMV, GEMM, row-sparse and column-sparse variants, with run-time
//! selection of the AVX-512, AVX2 or portable path and multi-threading over tiles of 32 rows.
//!
//! Determinism: every output row is computed by exactly one thread, with a sequence of
//! operations that depends only on the matrix, the table and the path (never on the thread
//! count or the tile split), so results are bit-identical for any number of threads. The
//! scalar, AVX2 and AVX-512 paths perform the same integer sums and the same f32 operations in
//! the same order, so they are bit-identical too.

use std::ops::Range;

use super::error::KernelError;
use super::format::{flush_order, TILE_ROWS};
use super::isa::Isa;
use super::packed::{PackedShape, PackedView};
use super::table::ActivationTable;

/// Which implementation runs the lookups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelPath {
    /// The best path this CPU has ([`Isa::detected`]).
    #[default]
    Auto,
    /// The portable path (any CPU).
    Scalar,
    /// The AVX2 path; an error on CPUs without AVX2, FMA and F16C.
    Avx2,
    /// The AVX-512 path (F, BW, VL, DQ; lookups with `vpshufb` on 512-bit registers).
    Avx512,
    /// The AVX-512 path with VBMI and VNNI (lookups with `vpermb`; the 8-bit dot-product
    /// kernels use `vpdpbusd`).
    Avx512Vnni,
}

impl KernelPath {
    /// The level that runs, or an error naming the instruction set the CPU lacks.
    pub fn resolve(self) -> Result<Isa, KernelError> {
        match self {
            KernelPath::Auto => Ok(Isa::detected()),
            KernelPath::Scalar => Ok(Isa::Scalar),
            KernelPath::Avx2 => Isa::Avx2.require(),
            KernelPath::Avx512 => Isa::Avx512.require(),
            KernelPath::Avx512Vnni => Isa::Avx512Vnni.require(),
        }
    }

    /// The explicit path of a level.
    pub fn of(isa: Isa) -> KernelPath {
        match isa {
            Isa::Scalar => KernelPath::Scalar,
            Isa::Avx2 => KernelPath::Avx2,
            Isa::Avx512 => KernelPath::Avx512,
            Isa::Avx512Vnni => KernelPath::Avx512Vnni,
        }
    }

    /// Every explicit path this CPU runs, scalar first: what the tests compare.
    pub fn available() -> Vec<KernelPath> {
        Isa::available_levels()
            .into_iter()
            .map(KernelPath::of)
            .collect()
    }
}

/// How a kernel call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// Threads to split the row tiles over (1 = the calling thread only). Work runs on
    /// rayon's current pool; install a pool of this size to pin it.
    pub threads: usize,
    pub path: KernelPath,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            threads: 1,
            path: KernelPath::Auto,
        }
    }
}

impl KernelOptions {
    pub fn threads(threads: usize) -> KernelOptions {
        KernelOptions {
            threads,
            ..KernelOptions::default()
        }
    }

    pub fn with_path(self, path: KernelPath) -> KernelOptions {
        KernelOptions { path, ..self }
    }
}

/// Whether the AVX2 path can run on this CPU.
pub fn avx2_available() -> bool {
    Isa::Avx2.available()
}

fn resolve(path: KernelPath) -> Result<Isa, KernelError> {
    path.resolve()
}

fn run_tile(
    path: Isa,
    view: &PackedView<'_>,
    tile: usize,
    table: &ActivationTable,
    groups: Range<usize>,
    out: &mut [f32; TILE_ROWS],
) {
    let shape = view.shape();
    let bytes = view.tile(tile);
    match path {
        Isa::Scalar => super::scalar::tile_kernel(bytes, &shape, table, groups, out),
        // SAFETY (all three): an `Isa` other than `Scalar` reaches here only from
        // `KernelPath::resolve`, which checked that the CPU has it; the tile slice has
        // `tile_bytes` bytes and the table was checked against the shape.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { super::avx2::tile_kernel(bytes, &shape, table, groups, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe {
            super::avx512::tile_kernel::<false>(bytes, &shape, table, groups, out)
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe {
            super::avx512::tile_kernel::<true>(bytes, &shape, table, groups, out)
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar level is detected off x86-64"),
    }
}

fn check_table(shape: &PackedShape, table: &ActivationTable) -> Result<(), KernelError> {
    if table.cols() != shape.cols {
        return Err(KernelError::ShapeMismatch {
            what: "activation table columns vs matrix columns",
            expected: shape.cols,
            actual: table.cols(),
        });
    }
    if !shape.group.get().is_multiple_of(table.group().get()) {
        return Err(KernelError::TableGroupMismatch {
            table_group: table.group().get(),
            matrix_group: shape.group.get(),
        });
    }
    Ok(())
}

fn check_threads(options: &KernelOptions) -> Result<(), KernelError> {
    if options.threads == 0 {
        return Err(KernelError::ZeroThreads);
    }
    Ok(())
}

/// Splits `0..items` into `parts` contiguous ranges whose sizes differ by at most one.
fn split(items: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, items.max(1));
    (0..parts)
        .map(|p| (items * p / parts)..(items * (p + 1) / parts))
        .collect()
}

/// Runs `work` once per part, in parallel on rayon's current pool when there is more than one.
fn for_each_part<T: Send>(parts: Vec<T>, work: impl Fn(T) + Sync) {
    if parts.len() == 1 {
        parts.into_iter().for_each(work);
        return;
    }
    rayon::scope(|scope| {
        let work = &work;
        for part in parts {
            scope.spawn(move |_| work(part));
        }
    });
}

/// Computes the tiles `tiles` into `y` (rows `tiles.start·32 ..`, clipped to the matrix).
fn gemv_tiles(
    path: Isa,
    view: &PackedView<'_>,
    table: &ActivationTable,
    tiles: Range<usize>,
    y: &mut [f32],
) {
    let order = flush_order(view.shape().bits);
    let groups = 0..view.shape().groups_per_row();
    let first_row = tiles.start * TILE_ROWS;
    let mut tile = tiles.start;
    while tile < tiles.end {
        // Two tiles per pass where the AVX2 kernel can share its tables between them.
        #[cfg(target_arch = "x86_64")]
        if path != Isa::Scalar && tile + 1 < tiles.end {
            let mut outs = [[0.0f32; TILE_ROWS]; 2];
            let pair = [view.tile(tile), view.tile(tile + 1)];
            let shape = view.shape();
            // SAFETY: a non-scalar `Isa` implies the CPU check passed; both tile slices have
            // `tile_bytes` bytes and the table was checked against the shape.
            unsafe {
                match path {
                    Isa::Avx512Vnni => super::avx512::tile_pair_kernel::<true>(
                        pair,
                        &shape,
                        table,
                        groups.clone(),
                        &mut outs,
                    ),
                    Isa::Avx512 => super::avx512::tile_pair_kernel::<false>(
                        pair,
                        &shape,
                        table,
                        groups.clone(),
                        &mut outs,
                    ),
                    _ => super::avx2::tile_pair_kernel(
                        pair,
                        &shape,
                        table,
                        groups.clone(),
                        &mut outs,
                    ),
                }
            }
            for (offset, out) in outs.iter().enumerate() {
                scatter(&order, out, (tile + offset) * TILE_ROWS - first_row, y);
            }
            tile += 2;
            continue;
        }
        let mut out = [0.0f32; TILE_ROWS];
        run_tile(path, view, tile, table, groups.clone(), &mut out);
        scatter(&order, &out, tile * TILE_ROWS - first_row, y);
        tile += 1;
    }
}

/// Writes a tile's flush-ordered values to rows `base..base+32` of `y` (rows past the end of
/// `y` are padding and dropped).
fn scatter(order: &[u8; TILE_ROWS], out: &[f32; TILE_ROWS], base: usize, y: &mut [f32]) {
    if let Some(rows) = y.get_mut(base..base + TILE_ROWS) {
        for (&row, value) in order.iter().zip(out) {
            rows[row as usize % TILE_ROWS] = *value;
        }
        return;
    }
    for (position, &row) in order.iter().enumerate() {
        if let Some(slot) = y.get_mut(base + row as usize) {
            *slot = out[position];
        }
    }
}

/// y = W·x for one activation vector, given as its table. `y` has one value per matrix row.
pub fn gemv(
    view: &PackedView<'_>,
    table: &ActivationTable,
    y: &mut [f32],
    options: KernelOptions,
) -> Result<(), KernelError> {
    let shape = view.shape();
    check_table(&shape, table)?;
    check_threads(&options)?;
    if y.len() != shape.rows {
        return Err(KernelError::ShapeMismatch {
            what: "output length vs matrix rows",
            expected: shape.rows,
            actual: y.len(),
        });
    }
    let path = resolve(options.path)?;
    let ranges = split(shape.tiles(), options.threads);
    let mut parts = Vec::with_capacity(ranges.len());
    let mut rest = y;
    for range in ranges {
        let rows = (range.end * TILE_ROWS).min(shape.rows) - range.start * TILE_ROWS;
        let (head, tail) = rest.split_at_mut(rows);
        parts.push((range, head));
        rest = tail;
    }
    for_each_part(parts, |(range, out)| {
        gemv_tiles(path, view, table, range, out)
    });
    Ok(())
}

/// y = W·x with the table built from `x` here (group size = the matrix's group size).
pub fn gemv_f32(
    view: &PackedView<'_>,
    x: &[f32],
    y: &mut [f32],
    options: KernelOptions,
) -> Result<(), KernelError> {
    let table = ActivationTable::build(x, view.shape().group)?;
    gemv(view, &table, y, options)
}

/// Weight groups a GEMM pass holds in cache while it runs every activation vector over them.
const GEMM_GROUPS_PER_PASS: usize = 4;

/// Y = X·Wᵀ for N activation vectors (prefill): `y` is N×M row-major, `y[n·M + m]` the output
/// of row m for vector n. Each tile's weights are read from memory once for all N vectors.
pub fn gemm(
    view: &PackedView<'_>,
    tables: &[ActivationTable],
    y: &mut [f32],
    options: KernelOptions,
) -> Result<(), KernelError> {
    let shape = view.shape();
    for table in tables {
        check_table(&shape, table)?;
    }
    check_threads(&options)?;
    let n = tables.len();
    if y.len() != n * shape.rows {
        return Err(KernelError::ShapeMismatch {
            what: "output length vs vectors × matrix rows",
            expected: n * shape.rows,
            actual: y.len(),
        });
    }
    let path = resolve(options.path)?;
    let order = flush_order(shape.bits);
    let groups = shape.groups_per_row();
    let ranges = split(shape.tiles(), options.threads);
    // Each part writes its own rows of every vector into a private buffer (n × its rows), so
    // no two threads share an output slice; the buffers are copied into `y` afterwards.
    let mut buffers: Vec<(Range<usize>, Vec<f32>)> = ranges
        .into_iter()
        .map(|range| {
            let rows = (range.end * TILE_ROWS).min(shape.rows) - range.start * TILE_ROWS;
            (range, vec![0.0f32; n * rows])
        })
        .collect();
    let parts: Vec<_> = buffers.iter_mut().collect();
    for_each_part(parts, |(range, buffer)| {
        let first_row = range.start * TILE_ROWS;
        let rows = buffer.len() / n.max(1);
        let mut outs = vec![[0.0f32; TILE_ROWS]; n];
        for tile in range.clone() {
            outs.iter_mut().for_each(|o| *o = [0.0; TILE_ROWS]);
            let mut g = 0;
            while g < groups {
                let pass = g..(g + GEMM_GROUPS_PER_PASS).min(groups);
                for (table, out) in tables.iter().zip(outs.iter_mut()) {
                    run_tile(path, view, tile, table, pass.clone(), out);
                }
                g = pass.end;
            }
            for (v, out) in outs.iter().enumerate() {
                let target = &mut buffer[v * rows..(v + 1) * rows];
                scatter(&order, out, tile * TILE_ROWS - first_row, target);
            }
        }
    });
    for (range, buffer) in &buffers {
        let first_row = range.start * TILE_ROWS;
        let rows = buffer.len() / n.max(1);
        for v in 0..n {
            y[v * shape.rows + first_row..v * shape.rows + first_row + rows]
                .copy_from_slice(&buffer[v * rows..(v + 1) * rows]);
        }
    }
    Ok(())
}

/// Computes only the rows listed in `rows` (active neurons): `y[i] = (W·x)[rows[i]]`, equal
/// bit for bit to the dense kernel's value for that row. Work is done per tile of 32 rows, so
/// the cost grows with the number of distinct tiles touched; cluster co-active rows (as
/// PowerInfer's neuron clusters do) to make it pay.
pub fn gemv_rows(
    view: &PackedView<'_>,
    table: &ActivationTable,
    rows: &[usize],
    y: &mut [f32],
    options: KernelOptions,
) -> Result<(), KernelError> {
    let shape = view.shape();
    check_table(&shape, table)?;
    check_threads(&options)?;
    if y.len() != rows.len() {
        return Err(KernelError::ShapeMismatch {
            what: "output length vs selected rows",
            expected: rows.len(),
            actual: y.len(),
        });
    }
    if let Some(&bad) = rows.iter().find(|&&r| r >= shape.rows) {
        return Err(KernelError::IndexOutOfRange {
            what: "selected row",
            index: bad,
            len: shape.rows,
        });
    }
    let path = resolve(options.path)?;
    let mut tiles: Vec<usize> = rows.iter().map(|r| r / TILE_ROWS).collect();
    tiles.sort_unstable();
    tiles.dedup();
    let mut outs = vec![[0.0f32; TILE_ROWS]; tiles.len()];
    let groups = 0..shape.groups_per_row();
    let ranges = split(tiles.len(), options.threads);
    let mut parts = Vec::with_capacity(ranges.len());
    let mut rest = outs.as_mut_slice();
    for range in ranges {
        let (head, tail) = rest.split_at_mut(range.len());
        parts.push((range, head));
        rest = tail;
    }
    for_each_part(parts, |(range, outs)| {
        for (tile, out) in tiles[range].iter().zip(outs.iter_mut()) {
            run_tile(path, view, *tile, table, groups.clone(), out);
        }
    });
    let order = flush_order(shape.bits);
    let mut position_of_row = [0usize; TILE_ROWS];
    for (position, &row) in order.iter().enumerate() {
        position_of_row[row as usize] = position;
    }
    for (slot, &row) in y.iter_mut().zip(rows) {
        let tile_index = tiles
            .binary_search(&(row / TILE_ROWS))
            .expect("every selected row's tile was computed");
        *slot = outs[tile_index][position_of_row[row % TILE_ROWS]];
    }
    Ok(())
}

/// Accumulates only the columns listed in `cols` (down projection over active neurons):
/// `y = Σ_{j ∈ cols} W[:, j]·x[j]`, equal bit for bit to the dense kernel on `x` with every
/// other column set to zero. Activation groups with no active column are skipped, so the cost
/// grows with the number of groups (of the matrix's group size) that hold an active column.
pub fn gemv_cols(
    view: &PackedView<'_>,
    x: &[f32],
    cols: &[usize],
    y: &mut [f32],
    options: KernelOptions,
) -> Result<(), KernelError> {
    let shape = view.shape();
    if x.len() != shape.cols {
        return Err(KernelError::ShapeMismatch {
            what: "activation length vs matrix columns",
            expected: shape.cols,
            actual: x.len(),
        });
    }
    let table = ActivationTable::build_masked(x, cols, shape.group)?;
    gemv(view, &table, y, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::format::{GroupSize, WeightBits};
    use crate::kernels::packed::PackedMatrix;
    use crate::kernels::quantize::QuantizedMatrix;
    use crate::kernels::reference;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn setup(
        rows: usize,
        cols: usize,
        bits: WeightBits,
        group: GroupSize,
        seed: u64,
    ) -> (QuantizedMatrix, PackedMatrix, Vec<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let q = QuantizedMatrix::quantize_min_max(&w, rows, cols, bits, group).unwrap();
        let packed = PackedMatrix::pack(&q);
        (q, packed, x)
    }

    #[test]
    fn lut_gemv_is_close_to_the_exact_product_and_paths_agree() {
        for (seed, bits) in WeightBits::ALL.into_iter().enumerate() {
            let (q, packed, x) = setup(70, 256, bits, GroupSize::G64, seed as u64);
            let table = ActivationTable::build(&x, GroupSize::G64).unwrap();
            let mut scalar = vec![0.0; 70];
            let scalar_options = KernelOptions::default().with_path(KernelPath::Scalar);
            gemv(&packed.view(), &table, &mut scalar, scalar_options).unwrap();
            let exact = reference::gemv_f64(&q, &x);
            for (row, (got, want)) in scalar.iter().zip(&exact).enumerate() {
                let scale_sum: f64 = (0..4)
                    .map(|g| {
                        crate::kernels::f16::f16_to_f32(q.scale_bits(row, g)) as f64
                            * table.half_scales()[g] as f64
                            * 2.0
                    })
                    .sum();
                let bound = scale_sum * bits.max_code() as f64 * 64.0 / 16.0 + 1e-4;
                assert!(
                    (*got as f64 - want).abs() <= bound,
                    "{bits:?} row {row}: {got} vs {want} (bound {bound})"
                );
            }
            for path in KernelPath::available() {
                let mut fast = vec![0.0; 70];
                let fast_options = KernelOptions::default().with_path(path);
                gemv(&packed.view(), &table, &mut fast, fast_options).unwrap();
                assert_eq!(scalar, fast, "{bits:?}: scalar and {path:?} differ");
            }
        }
    }

    #[test]
    fn split_covers_everything_in_order() {
        for items in 0..20 {
            for parts in 1..6 {
                let ranges = split(items, parts);
                let mut next = 0;
                for r in &ranges {
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, items);
            }
        }
    }
}
