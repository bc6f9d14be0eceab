//! LEB128 unsigned varints: 7 bits per byte, low bits first, high bit set on every byte but the
//! last. Small numbers (sequence ids, positions, neuron id gaps) take one or two bytes.

/// Appends `value` to `out`.
pub fn put_u32(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes `put_u32` writes for `value`.
pub fn len_u32(value: u32) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Reads a varint from `bytes[*pos..]`, advancing `pos`. Fails on a cut-short varint, on one
/// longer than 5 bytes, and on one whose value exceeds `u32::MAX`.
pub fn get_u32(bytes: &[u8], pos: &mut usize) -> Result<u32, &'static str> {
    let mut value: u64 = 0;
    for i in 0..5 {
        let b = *bytes
            .get(*pos)
            .ok_or("varint runs past the end of the record")?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| "varint exceeds 32 bits");
        }
    }
    Err("varint longer than 5 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trips(v in any::<u32>()) {
            let mut out = Vec::new();
            put_u32(&mut out, v);
            prop_assert_eq!(out.len(), len_u32(v));
            let mut pos = 0;
            prop_assert_eq!(get_u32(&out, &mut pos), Ok(v));
            prop_assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn rejects_overlong_and_cut_short() {
        let mut pos = 0;
        assert!(get_u32(&[0x80, 0x80], &mut pos).is_err());
        pos = 0;
        assert!(get_u32(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos).is_err());
        pos = 0;
        assert!(get_u32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos).is_err());
    }
}
