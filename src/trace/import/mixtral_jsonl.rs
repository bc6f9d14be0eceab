//! Importer for the Mixtral-8x7B routing JSON-lines files of github.com/Mario928/speculative-moe
//! (see `../shared/data/mixtral-8x7b-routing/SOURCE.md`).
//!
//! Two layouts exist:
//! - **decode-only** (`token_idx`): one block of records per (problem, layer), tokens numbered
//!   0, 1, 2, ... within each layer. The recorder dropped records whose top-2 weights were an
//!   exact [0.5, 0.5] tie, and renumbered the rest, so after a gap every later `token_idx` of
//!   that layer is one too low. Where the gap was cannot be recovered. The importer keeps each
//!   layer's records in their recorded order (so per-layer sequences, which caches see, are
//!   exact) and fills the missing cells at the *end* of the layer; cross-layer alignment in a
//!   layer with a gap is uncertain after its unknown first gap. The header lists those layers.
//! - **prefill+decode** (`token_pos`): per layer, a block of prefill records with absolute
//!   positions, then decode records in generation order (layers 0..31 per token, all with
//!   `token_pos` 0). Positions are exact here, so missing cells are filled where they belong.
//!
//! A filled cell gets the experts of the nearest earlier token at that layer (the next one if
//! there is none) and gate weights [0.5, 0.5], the tie that made the recorder drop it; its
//! layer is listed in the record's `filled_layers`.

use crate::model::ModelGeometry;
use crate::trace::error::{TraceError, TraceErrorKind};
use crate::trace::header::{SourceKind, TraceHeader, TraceSource};
use crate::trace::reader::VecSource;
use crate::trace::record::{Phase, TokenRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

const LAYERS: usize = 32;
const EXPERTS: u16 = 8;
const TOP_K: usize = 2;
/// Bound on input lines: the real files have 10,779 and 6,777; anything vastly larger is not
/// one of them and would be held in memory.
const MAX_LINES: usize = 5_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    dataset: Option<String>,
    problem_id: u32,
    layer: u32,
    experts: Vec<u16>,
    gating_probs: Vec<f64>,
    #[serde(default)]
    token_idx: Option<u32>,
    #[serde(default)]
    token_pos: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MixtralLayout {
    DecodeOnly,
    PrefillDecode,
}

/// What the importer read and repaired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImportReport {
    pub layout: MixtralLayout,
    pub lines_read: u64,
    pub sequences: u32,
    pub tokens: u64,
    pub prefill_tokens: u64,
    /// Missing (token, layer) cells filled where they belong (exact positions known).
    pub cells_filled_in_place: u64,
    /// Missing cells filled at the end of their layer (decode-only layout: gap position unknown).
    pub cells_filled_at_layer_end: u64,
    /// (sequence, layer, cells filled at the end): layers whose cross-layer alignment is
    /// uncertain after an unknown point.
    pub layers_with_unknown_gaps: Vec<(u32, u32, u32)>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} layout: {} lines -> {} tokens ({} prefill) in {} sequences; {} missing cells \
             filled in place, {} filled at the end of their layer",
            match self.layout {
                MixtralLayout::DecodeOnly => "decode-only",
                MixtralLayout::PrefillDecode => "prefill+decode",
            },
            self.lines_read,
            self.tokens,
            self.prefill_tokens,
            self.sequences,
            self.cells_filled_in_place,
            self.cells_filled_at_layer_end
        )?;
        if !self.layers_with_unknown_gaps.is_empty() {
            write!(
                f,
                " ({} (sequence, layer) pairs had gaps at unknown positions: their cross-layer \
                 alignment is uncertain after the gap)",
                self.layers_with_unknown_gaps.len()
            )?;
        }
        Ok(())
    }
}

/// One routing decision: experts in descending weight order and their weights.
#[derive(Clone, Copy, Debug)]
struct Cell {
    experts: [u16; TOP_K],
    scores: [f32; TOP_K],
}

fn parse_cell(line: &Line) -> Result<Cell, String> {
    if line.layer as usize >= LAYERS {
        return Err(format!(
            "layer {} is out of range (Mixtral has {LAYERS})",
            line.layer
        ));
    }
    if line.experts.len() != TOP_K || line.gating_probs.len() != TOP_K {
        return Err(format!(
            "{} experts and {} gating_probs, expected {TOP_K} of each",
            line.experts.len(),
            line.gating_probs.len()
        ));
    }
    if let Some(&e) = line.experts.iter().find(|&&e| e >= EXPERTS) {
        return Err(format!(
            "expert id {e} is out of range (Mixtral has {EXPERTS} experts)"
        ));
    }
    if line.experts[0] == line.experts[1] {
        return Err(format!("expert {} is listed twice", line.experts[0]));
    }
    if let Some(&w) = line
        .gating_probs
        .iter()
        .find(|w| !w.is_finite() || **w < 0.0)
    {
        return Err(format!(
            "gating prob {w} is not a finite non-negative number"
        ));
    }
    let mut order = [0usize, 1];
    if line.gating_probs[1] > line.gating_probs[0] {
        order = [1, 0];
    }
    Ok(Cell {
        experts: [line.experts[order[0]], line.experts[order[1]]],
        scores: [
            line.gating_probs[order[0]] as f32,
            line.gating_probs[order[1]] as f32,
        ],
    })
}

/// Reads a routing file into a header and records (the files are small: at most
/// `MAX_LINES` lines are accepted).
pub fn read_mixtral_jsonl(
    input: &Path,
    model: &ModelGeometry,
) -> Result<(TraceHeader, Vec<TokenRecord>, ImportReport), TraceError> {
    let file = std::fs::File::open(input)
        .map_err(|e| TraceError::io(input, "open the routing file", e))?;
    read_mixtral_jsonl_from(std::io::BufReader::new(file), input, model)
}

/// [`read_mixtral_jsonl`] on any buffered byte stream (Mixtral-8x7B's shape is implied);
/// `input` names the stream in error messages.
pub fn read_mixtral_jsonl_from(
    mut reader: impl BufRead,
    input: &Path,
    model: &ModelGeometry,
) -> Result<(TraceHeader, Vec<TokenRecord>, ImportReport), TraceError> {
    if (
        model.layers as usize,
        model.experts,
        model.top_k,
        model.dense_layers,
    ) != (LAYERS, EXPERTS as u32, TOP_K as u32, 0)
    {
        return Err(TraceError::new(
            TraceErrorKind::Input,
            input,
            format!(
                "these routing files record Mixtral-8x7B ({LAYERS} MoE layers, {EXPERTS} experts, \
                 top-{TOP_K}); model `{}` has {} layers, {} experts, top-{}",
                model.name, model.layers, model.experts, model.top_k
            ),
        ));
    }
    let bad = |line: usize, m: String| {
        TraceError::new(TraceErrorKind::Input, input, format!("line {line}: {m}"))
    };
    let mut lines: Vec<(usize, Line)> = Vec::new();
    // The prompts' data set, as the records name it (the label must come from the input: the
    // same recorder produced HumanEval and GSM8K files).
    let mut dataset: Option<String> = None;
    let mut raw = Vec::new();
    for n in 1.. {
        raw.clear();
        let got = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| TraceError::io(input, "read the routing file", e))?;
        if got == 0 {
            break;
        }
        if n == 1 && raw.starts_with(b"\xef\xbb\xbf") {
            return Err(bad(
                n,
                "the file starts with a UTF-8 byte-order mark (bytes EF BB BF); JSON lines \
                 files have none: remove it (e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`)"
                    .into(),
            ));
        }
        let text = std::str::from_utf8(&raw).map_err(|e| {
            bad(
                n,
                format!(
                    "not UTF-8 text (invalid byte at column {})",
                    e.valid_up_to() + 1
                ),
            )
        })?;
        if text.trim().is_empty() {
            continue;
        }
        if lines.len() >= MAX_LINES {
            return Err(bad(
                n,
                format!("more than {MAX_LINES} lines: not a routing file this importer knows"),
            ));
        }
        let line: Line =
            serde_json::from_str(text).map_err(|e| bad(n, format!("not a routing record: {e}")))?;
        if let Some(d) = &line.dataset {
            if d.is_empty() {
                return Err(bad(n, "empty `dataset`".into()));
            }
            match &dataset {
                None => dataset = Some(d.clone()),
                Some(first) if first != d => {
                    return Err(bad(
                        n,
                        format!(
                            "`dataset` is \"{d}\" but earlier records say \"{first}\": one file must record one dataset"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        lines.push((n, line));
    }
    let Some((first_line, first)) = lines.first() else {
        return Err(TraceError::new(
            TraceErrorKind::Input,
            input,
            "the file holds no routing records",
        ));
    };
    let layout = match (first.token_idx, first.token_pos) {
        (Some(_), None) => MixtralLayout::DecodeOnly,
        (None, Some(_)) => MixtralLayout::PrefillDecode,
        _ => {
            return Err(bad(
                *first_line,
                "a record needs exactly one of `token_idx` and `token_pos`".into(),
            ))
        }
    };
    for (n, l) in &lines {
        let ok = match layout {
            MixtralLayout::DecodeOnly => l.token_idx.is_some() && l.token_pos.is_none(),
            MixtralLayout::PrefillDecode => l.token_pos.is_some() && l.token_idx.is_none(),
        };
        if !ok {
            return Err(bad(
                *n,
                "mixes `token_idx` and `token_pos` layouts in one file".into(),
            ));
        }
    }
    // Group by problem, keeping file order; problems must be contiguous and ascending.
    let mut problems: Vec<(u32, Vec<(usize, &Line)>)> = Vec::new();
    for (n, l) in &lines {
        match problems.last_mut() {
            Some((p, v)) if *p == l.problem_id => v.push((*n, l)),
            Some((p, _)) if *p > l.problem_id => {
                return Err(bad(
                    *n,
                    format!(
                        "problem {} after problem {p}: problems must be contiguous and ascending",
                        l.problem_id
                    ),
                ))
            }
            _ => problems.push((l.problem_id, vec![(*n, l)])),
        }
    }
    let mut report = ImportReport {
        layout,
        lines_read: lines.len() as u64,
        sequences: problems.len() as u32,
        tokens: 0,
        prefill_tokens: 0,
        cells_filled_in_place: 0,
        cells_filled_at_layer_end: 0,
        layers_with_unknown_gaps: Vec::new(),
    };
    let mut records = Vec::new();
    for (problem, group) in &problems {
        let grid = match layout {
            MixtralLayout::DecodeOnly => {
                decode_only_grid(*problem, group, &mut report).map_err(|(n, m)| bad(n, m))?
            }
            MixtralLayout::PrefillDecode => {
                prefill_decode_grid(group, &mut report).map_err(|(n, m)| bad(n, m))?
            }
        };
        let (prefill, grid) = grid;
        for (t, row) in grid.iter().enumerate() {
            let mut rec = TokenRecord {
                sequence: *problem,
                position: t as u32,
                phase: if t < prefill {
                    Phase::Prefill
                } else {
                    Phase::Decode
                },
                ..Default::default()
            };
            for (layer, (cell, filled)) in row.iter().enumerate() {
                rec.experts.extend_from_slice(&cell.experts);
                rec.scores.extend_from_slice(&cell.scores);
                if *filled {
                    rec.filled_layers.push(layer as u16);
                }
            }
            records.push(rec);
        }
        report.tokens += grid.len() as u64;
        report.prefill_tokens += prefill as u64;
    }
    let file_name = input
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let prompts = match &dataset {
        Some(d) => format!("prompts of data set \"{d}\" (the records' `dataset` field)"),
        None => "prompts from a data set the input does not name".to_string(),
    };
    let description = format!(
        "Mixtral-8x7B-Instruct routing recorded by others (github.com/Mario928/speculative-moe \
         @216e26e, vLLM FusedMoE hook, FP8 experts, greedy decoding, {prompts}), \
         imported by edgesim from {file_name}: {report}. Filled cells take the experts of the \
         nearest earlier token at the same layer and weights [0.5, 0.5] (the recorder dropped \
         exact ties); they are listed in each record's filled layers.{}",
        match layout {
            MixtralLayout::DecodeOnly =>
                " Positions count generated tokens only (the prompt length is not in the file).",
            MixtralLayout::PrefillDecode => "",
        }
    );
    let header = TraceHeader::expert(
        model,
        0,
        TraceSource {
            kind: SourceKind::Imported,
            description,
            parameters: json!({
                "importer": "edgesim mixtral-jsonl v1",
                "input": file_name,
                "report": report,
            }),
            targets: Vec::new(),
        },
    );
    Ok((header, records, report))
}

type Grid = (usize, Vec<Vec<(Cell, bool)>>);

fn decode_only_grid(
    problem: u32,
    group: &[(usize, &Line)],
    report: &mut ImportReport,
) -> Result<Grid, (usize, String)> {
    let mut per_layer: Vec<Vec<Cell>> = vec![Vec::new(); LAYERS];
    for &(n, l) in group {
        let cell = parse_cell(l).map_err(|m| (n, m))?;
        let column = &mut per_layer[l.layer as usize];
        let idx = l.token_idx.expect("layout checked");
        if idx as usize != column.len() {
            return Err((n, format!(
                "layer {}: token_idx {idx}, expected {} (tokens are numbered consecutively within a layer)",
                l.layer,
                column.len()
            )));
        }
        column.push(cell);
    }
    let tokens = per_layer.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(layer) = per_layer.iter().position(Vec::is_empty) {
        return Err((
            group[0].0,
            format!("problem {problem} has no records at layer {layer}"),
        ));
    }
    let mut grid = vec![Vec::with_capacity(LAYERS); tokens];
    for (layer, column) in per_layer.iter().enumerate() {
        let missing = tokens - column.len();
        if missing > 0 {
            report.cells_filled_at_layer_end += missing as u64;
            report
                .layers_with_unknown_gaps
                .push((problem, layer as u32, missing as u32));
        }
        for (t, row) in grid.iter_mut().enumerate() {
            match column.get(t) {
                Some(c) => row.push((*c, false)),
                None => row.push((tie_from(column.last().expect("non-empty")), true)),
            }
        }
    }
    Ok((0, grid))
}

fn prefill_decode_grid(
    group: &[(usize, &Line)],
    report: &mut ImportReport,
) -> Result<Grid, (usize, String)> {
    // Prefill: blocks per layer, ascending layers, ascending positions. Decode starts at the
    // first record whose layer is lower than the previous record's after the last layer's
    // block began.
    let mut prefill: BTreeMap<(u32, u32), Cell> = BTreeMap::new();
    let mut decode: Vec<BTreeMap<u32, Cell>> = Vec::new();
    let mut prefill_tokens = 0u32;
    let mut in_decode = false;
    let mut prev: Option<(u32, u32)> = None;
    for &(n, l) in group {
        let cell = parse_cell(l).map_err(|m| (n, m))?;
        let pos = l.token_pos.expect("layout checked");
        if !in_decode {
            if let Some((pl, pp)) = prev {
                if l.layer < pl {
                    if pl as usize != LAYERS - 1 {
                        return Err((n, format!("layer {} after layer {pl}: prefill blocks must cover layers 0..{} in order", l.layer, LAYERS - 1)));
                    }
                    in_decode = true;
                } else if l.layer == pl && pos <= pp {
                    return Err((
                        n,
                        format!(
                            "layer {}: prefill position {pos} does not follow {pp}",
                            l.layer
                        ),
                    ));
                }
            }
        }
        if in_decode {
            let new_token = match prev {
                Some((pl, _)) => l.layer <= pl || decode.is_empty(),
                None => true,
            };
            if new_token {
                decode.push(BTreeMap::new());
            }
            decode.last_mut().expect("pushed").insert(l.layer, cell);
        } else {
            prefill_tokens = prefill_tokens.max(pos + 1);
            prefill.insert((pos, l.layer), cell);
        }
        prev = Some((l.layer, pos));
    }
    let tokens = prefill_tokens as usize + decode.len();
    let mut grid: Vec<Vec<Option<Cell>>> = vec![vec![None; LAYERS]; tokens];
    for (&(pos, layer), cell) in &prefill {
        grid[pos as usize][layer as usize] = Some(*cell);
    }
    for (i, token) in decode.iter().enumerate() {
        for (&layer, cell) in token {
            grid[prefill_tokens as usize + i][layer as usize] = Some(*cell);
        }
    }
    let mut out = vec![Vec::with_capacity(LAYERS); tokens];
    for layer in 0..LAYERS {
        let column: Vec<Option<Cell>> = grid.iter().map(|row| row[layer]).collect();
        if column.iter().all(Option::is_none) {
            return Err((group[0].0, format!("no records at layer {layer}")));
        }
        for (t, row) in out.iter_mut().enumerate() {
            match column[t] {
                Some(c) => row.push((c, false)),
                None => {
                    let near = column[..t]
                        .iter()
                        .rev()
                        .flatten()
                        .next()
                        .or_else(|| column[t..].iter().flatten().next())
                        .expect("the column has a record");
                    report.cells_filled_in_place += 1;
                    row.push((tie_from(near), true));
                }
            }
        }
    }
    Ok((prefill_tokens as usize, out))
}

/// A filled cell: `near`'s experts with the [0.5, 0.5] tie the recorder dropped.
fn tie_from(near: &Cell) -> Cell {
    Cell {
        experts: near.experts,
        scores: [0.5, 0.5],
    }
}

/// Imports `input` and writes the trace to `output`.
pub fn import_mixtral_jsonl(
    input: &Path,
    output: &Path,
    model: &ModelGeometry,
) -> Result<ImportReport, TraceError> {
    let (header, records, report) = read_mixtral_jsonl(input, model)?;
    crate::trace::gen::write_trace(&mut VecSource::new(header, records), output)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixtral() -> ModelGeometry {
        let profile = crate::scenario::load_model("mixtral-8x7b").unwrap();
        ModelGeometry::from_profile(&profile).unwrap()
    }
    use std::io::Write;

    fn line(problem: u32, layer: u32, experts: [u16; 2], w: f64, key: &str, t: u32) -> String {
        format!(
            "{{\"dataset\": \"x\", \"problem_id\": {problem}, \"layer\": {layer}, \"experts\": [{}, {}], \"gating_probs\": [{w}, {}], \"{key}\": {t}}}\n",
            experts[0], experts[1], 1.0 - w
        )
    }

    #[test]
    fn decode_only_gap_is_filled_at_layer_end_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        for layer in 0..32 {
            // Layer 5 lost one of its 3 tokens.
            let n = if layer == 5 { 2 } else { 3 };
            for t in 0..n {
                f.write_all(line(0, layer, [t as u16, 7], 0.7, "token_idx", t).as_bytes())
                    .unwrap();
            }
        }
        drop(f);
        let (_, recs, report) = read_mixtral_jsonl(&path, &mixtral()).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(report.cells_filled_at_layer_end, 1);
        assert_eq!(report.layers_with_unknown_gaps, vec![(0, 5, 1)]);
        assert_eq!(recs[2].filled_layers, vec![5]);
        assert_eq!(recs[2].experts_at(5, 2), &[1, 7]);
        assert_eq!(recs[2].scores_at(5, 2), &[0.5, 0.5]);
    }

    fn one_token_file(dir: &Path, name: &str, dataset: Option<&str>) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut text = String::new();
        for layer in 0..32 {
            let l = line(0, layer, [1, 2], 0.6, "token_idx", 0);
            text += &match dataset {
                Some(d) => l.replace("\"dataset\": \"x\"", &format!("\"dataset\": \"{d}\"")),
                None => l.replace("\"dataset\": \"x\", ", ""),
            };
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_label_names_the_records_dataset() {
        // The same recorder wrote HumanEval and GSM8K files; each is labelled by its own
        // `dataset` field, never by a fixed string.
        let dir = tempfile::tempdir().unwrap();
        for d in ["gsm8k", "humaneval"] {
            let path = one_token_file(dir.path(), &format!("{d}.jsonl"), Some(d));
            let (h, _, _) = read_mixtral_jsonl(&path, &mixtral()).unwrap();
            let desc = &h.source.description;
            assert!(desc.contains(&format!("data set \"{d}\"")), "{desc}");
            assert!(!desc.contains("HumanEval"), "{desc}");
        }
        let path = one_token_file(dir.path(), "none.jsonl", None);
        let (h, _, _) = read_mixtral_jsonl(&path, &mixtral()).unwrap();
        assert!(
            h.source.description.contains("does not name"),
            "{}",
            h.source.description
        );
    }

    #[test]
    fn two_datasets_in_one_file_are_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.jsonl");
        let text = line(0, 0, [1, 2], 0.6, "token_idx", 0)
            + &line(0, 1, [1, 2], 0.6, "token_idx", 0).replace("\"x\"", "\"gsm8k\"");
        std::fs::write(&path, text).unwrap();
        let e = read_mixtral_jsonl(&path, &mixtral())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("gsm8k"), "{e}");
    }

    #[test]
    fn bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let text =
            line(0, 0, [1, 2], 0.6, "token_idx", 0) + &line(0, 1, [1, 9], 0.6, "token_idx", 0);
        std::fs::write(&path, text).unwrap();
        let e = read_mixtral_jsonl(&path, &mixtral())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("expert id 9"), "{e}");
    }
}
