//! The ordering rule between records: a trace is a concatenation of sequences.
//!
//! Sequence ids strictly increase from one sequence to the next, a sequence's tokens are
//! contiguous, and positions strictly increase within a sequence (gaps are allowed: an
//! importer may drop a token it cannot repair). Checking this needs only the previous record,
//! so memory stays flat however long the trace is.

use super::record::TokenRecord;

#[derive(Clone, Debug, Default)]
pub struct SequenceOrder {
    last: Option<(u32, u32)>,
}

impl SequenceOrder {
    pub fn check(&mut self, rec: &TokenRecord) -> Result<(), String> {
        if let Some((seq, pos)) = self.last {
            if rec.sequence == seq && rec.position <= pos {
                return Err(format!(
                    "sequence {seq}: position {} does not follow position {pos} (positions must \
                     increase within a sequence)",
                    rec.position
                ));
            }
            if rec.sequence < seq {
                return Err(format!(
                    "sequence id {} after sequence {seq}: sequences must appear in increasing id \
                     order, each one contiguous",
                    rec.sequence
                ));
            }
        }
        self.last = Some((rec.sequence, rec.position));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sequence: u32, position: u32) -> TokenRecord {
        TokenRecord {
            sequence,
            position,
            ..Default::default()
        }
    }

    #[test]
    fn accepts_concatenated_sequences_and_rejects_reordering() {
        let mut o = SequenceOrder::default();
        for (s, p) in [(0, 0), (0, 1), (0, 5), (2, 0), (2, 1)] {
            o.check(&rec(s, p)).unwrap();
        }
        assert!(o.check(&rec(2, 1)).unwrap_err().contains("position 1"));
        assert!(o.check(&rec(1, 7)).unwrap_err().contains("increasing id"));
    }
}
