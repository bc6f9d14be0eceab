//! GPT-2's byte-level alphabet: every byte has a printable stand-in character, so a vocabulary
//! of strings can hold arbitrary bytes.
//!
//! Printable Latin-1 bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for themselves; the other 68
//! bytes map, in byte order, to U+0100 onwards (so the space 0x20 becomes `Ġ`, U+0120).

/// The stand-in character of each byte.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_unprintable = 0u32;
    for (byte, slot) in table.iter_mut().enumerate() {
        let printable = matches!(byte, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let code = if printable {
            byte as u32
        } else {
            next_unprintable += 1;
            255 + next_unprintable
        };
        *slot = char::from_u32(code).expect("U+0000..U+0143 are all valid chars");
    }
    table
}

/// The byte a stand-in character represents, if it is one.
pub fn char_to_byte(c: char, table: &[char; 256]) -> Option<u8> {
    // The table is a bijection onto a small range; a linear scan is only used to build maps.
    table.iter().position(|&t| t == c).map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_stand_ins() {
        let table = byte_to_char_table();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'\t' as usize], 'ĉ');
        assert_eq!(table[b'A' as usize], 'A');
        assert_eq!(table[0], 'Ā');
        assert_eq!(table[0xad], 'Ń');
        assert_eq!(table[0xe9], 'é');
    }

    #[test]
    fn table_is_a_bijection() {
        let table = byte_to_char_table();
        for byte in 0..=255u8 {
            assert_eq!(char_to_byte(table[byte as usize], &table), Some(byte));
        }
        let mut sorted = table.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }
}
