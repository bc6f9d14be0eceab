//! Byte-pair merging: the ranked merge table and the merge loop over one piece.

use crate::llm::LlmError;
use std::collections::HashMap;

/// A merge of two adjacent tokens into a third; lower rank merges first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Merge {
    rank: u32,
    merged: u32,
}

/// The merge table, keyed by the pair of token ids it joins.
#[derive(Debug)]
pub struct MergeTable {
    merges: HashMap<(u32, u32), Merge>,
}

impl MergeTable {
    /// Builds the table from `tokenizer.ggml.merges` lines ("left right", in rank order).
    pub fn new(lines: &[&str], vocab: &HashMap<String, u32>) -> Result<MergeTable, LlmError> {
        let mut merges = HashMap::with_capacity(lines.len());
        for (rank, line) in lines.iter().enumerate() {
            let bad = |what: &str| {
                LlmError::Tokenizer(format!("tokenizer.ggml.merges[{rank}] = {line:?}: {what}"))
            };
            let (left, right) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected two tokens separated by one space"))?;
            let id = |text: &str| {
                vocab
                    .get(text)
                    .copied()
                    .ok_or_else(|| bad(&format!("token {text:?} is not in the vocabulary")))
            };
            let pair = (id(left)?, id(right)?);
            let merged = id(&format!("{left}{right}"))?;
            // A pair listed twice keeps its first (best) rank, as Hugging Face does.
            merges.entry(pair).or_insert(Merge {
                rank: rank as u32,
                merged,
            });
        }
        Ok(MergeTable { merges })
    }

    pub fn len(&self) -> usize {
        self.merges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.merges.is_empty()
    }

    /// Merges `symbols` in place: repeatedly join the adjacent pair of lowest rank (leftmost
    /// on ties) until no adjacent pair has a merge.
    pub fn apply(&self, symbols: &mut Vec<u32>) {
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(at, pair)| {
                    self.merges
                        .get(&(pair[0], pair[1]))
                        .map(|merge| (merge.rank, at, merge.merged))
                })
                .min();
            let Some((_, at, merged)) = best else {
                return;
            };
            symbols[at] = merged;
            symbols.remove(at + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> HashMap<String, u32> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect()
    }

    #[test]
    fn lowest_rank_merges_first() {
        let v = vocab(&["a", "b", "c", "ab", "bc", "abc"]);
        let table = MergeTable::new(&["b c", "a bc", "a b"], &v).unwrap();
        let mut symbols = vec![0, 1, 2]; // a b c
        table.apply(&mut symbols);
        assert_eq!(symbols, vec![5]); // (b c) first, then (a bc)
        let mut symbols = vec![0, 1, 0, 1]; // a b a b
        table.apply(&mut symbols);
        assert_eq!(symbols, vec![3, 3]);
    }

    #[test]
    fn bad_merge_lines_are_named() {
        let v = vocab(&["a", "b"]);
        let error = MergeTable::new(&["a b"], &v).unwrap_err().to_string();
        assert!(
            error.contains("merges[0]") && error.contains("\"ab\""),
            "{error}"
        );
        let error = MergeTable::new(&["ab"], &v).unwrap_err().to_string();
        assert!(error.contains("two tokens"), "{error}");
    }
}
