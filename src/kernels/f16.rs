//! IEEE 754 binary16 conversions, written out so the packed format needs no extra crate.
//!
//! Scales and centres are stored as fp16 (half the bytes of f32, which matters when weights
//! stream from DRAM). Decoding is exact, so the scalar path and the AVX2 path (`vcvtph2ps`) see
//! the same f32 values.

/// Largest finite fp16 value.
pub const F16_MAX: f32 = 65504.0;

/// Converts fp16 bits to f32 exactly (subnormals, infinities and NaN included).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exponent = ((bits >> 10) & 0x1f) as u32;
    let mantissa = (bits & 0x3ff) as u32;
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        (0, m) => {
            // Subnormal: value = m * 2^-24, exactly representable in f32.
            let value = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -value } else { value };
        }
        (0x1f, 0) => 0x7f80_0000,
        (0x1f, m) => 0x7fc0_0000 | (m << 13),
        (e, m) => ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// Converts f32 to fp16 bits with round-to-nearest-even. Values beyond the fp16 range become
/// infinity; callers that store scales check [`F16_MAX`] first.
pub fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        let nan_bit = if mantissa != 0 { 0x200 } else { 0 };
        return sign | 0x7c00 | nan_bit;
    }
    let unbiased = exponent - 127;
    if unbiased > 15 {
        return sign | 0x7c00;
    }
    if unbiased >= -14 {
        // Normal fp16: keep 10 mantissa bits, round the 13 dropped ones to nearest even.
        let half_exponent = (unbiased + 15) as u32;
        let mut out = (half_exponent << 10) | (mantissa >> 13);
        let dropped = mantissa & 0x1fff;
        if dropped > 0x1000 || (dropped == 0x1000 && (out & 1) == 1) {
            out += 1; // may carry into the exponent, which is the correct rounding
        }
        return sign | out as u16;
    }
    if unbiased < -25 {
        return sign;
    }
    // Subnormal fp16: value / 2^-24, rounded to nearest even integer.
    let full = mantissa | 0x80_0000; // 24-bit significand, value = full * 2^(unbiased-23)
    let shift = (-unbiased - 1) as u32; // so that result = full >> shift in units of 2^-24
    let mut out = full >> shift;
    let dropped = full & ((1 << shift) - 1);
    let halfway = 1 << (shift - 1);
    if dropped > halfway || (dropped == halfway && (out & 1) == 1) {
        out += 1;
    }
    sign | out as u16
}

/// Rounds an f32 to the nearest fp16 value and back.
pub fn round_to_f16(value: f32) -> f32 {
    f16_to_f32(f32_to_f16(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_round_trip() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(0.5), 0x3800);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f32_to_f16(1023.0 * 2f32.powi(-24)), 0x03ff);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        // 1 + 3 * 2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even).
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        // Just above halfway rounds up.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11) + 2f32.powi(-20)), 0x3c01);
    }

    #[test]
    fn every_f16_value_survives_a_round_trip() {
        for bits in 0u16..=0xffff {
            let value = f16_to_f32(bits);
            if value.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16(value), bits, "bits {bits:#06x} value {value}");
        }
    }
}
