//! Which token comes next in a generated trace: `tokens` split over `sequences` as evenly as
//! possible (the first `tokens % sequences` sequences get one more), each starting with up to
//! `prefill_per_sequence` prefill tokens, the rest decode.

use crate::trace::record::Phase;

#[derive(Clone, Debug)]
pub struct Schedule {
    tokens: u64,
    sequences: u32,
    prefill_per_sequence: u32,
    emitted: u64,
    sequence: u32,
    position: u32,
}

impl Schedule {
    pub fn new(tokens: u64, sequences: u32, prefill_per_sequence: u32) -> Result<Self, String> {
        if sequences == 0 {
            return Err("--sequences must be at least 1".into());
        }
        if tokens < u64::from(sequences) {
            return Err(format!(
                "--tokens ({tokens}) must be at least --sequences ({sequences}): every sequence \
                 needs a token"
            ));
        }
        if tokens / u64::from(sequences) >= u64::from(u32::MAX) {
            return Err("a sequence would exceed 2^32 tokens".into());
        }
        Ok(Schedule {
            tokens,
            sequences,
            prefill_per_sequence,
            emitted: 0,
            sequence: 0,
            position: 0,
        })
    }

    fn length_of(&self, sequence: u32) -> u32 {
        let base = self.tokens / u64::from(self.sequences);
        let extra = u64::from(sequence < (self.tokens % u64::from(self.sequences)) as u32);
        (base + extra) as u32
    }

    /// The next token's (sequence, position, phase), or `None` when all are emitted.
    pub fn next_token(&mut self) -> Option<(u32, u32, Phase)> {
        if self.emitted == self.tokens {
            return None;
        }
        if self.position == self.length_of(self.sequence) {
            self.sequence += 1;
            self.position = 0;
        }
        let phase = if self.position < self.prefill_per_sequence {
            Phase::Prefill
        } else {
            Phase::Decode
        };
        let token = (self.sequence, self.position, phase);
        self.position += 1;
        self.emitted += 1;
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tokens_over_sequences_with_prefill_first() {
        let mut s = Schedule::new(7, 2, 2).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| s.next_token()).collect();
        use Phase::*;
        assert_eq!(
            got,
            vec![
                (0, 0, Prefill),
                (0, 1, Prefill),
                (0, 2, Decode),
                (0, 3, Decode),
                (1, 0, Prefill),
                (1, 1, Prefill),
                (1, 2, Decode)
            ]
        );
        assert!(Schedule::new(1, 2, 0).is_err());
    }
}
