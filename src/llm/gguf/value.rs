//! GGUF metadata values: the thirteen value types, arrays included.

use super::cursor::Cursor;
use crate::llm::LlmError;

/// GGUF value type ids, as written in the file.
pub mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Arrays nest at most this deep; GGUF writers never nest at all, so deeper is a corrupt file
/// (and an unbounded recursion otherwise).
const ARRAY_DEPTH_MAX: usize = 4;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetadataValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetadataValue {
    /// The GGUF type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetadataValue::U8(_) => "u8",
            MetadataValue::I8(_) => "i8",
            MetadataValue::U16(_) => "u16",
            MetadataValue::I16(_) => "i16",
            MetadataValue::U32(_) => "u32",
            MetadataValue::I32(_) => "i32",
            MetadataValue::F32(_) => "f32",
            MetadataValue::Bool(_) => "bool",
            MetadataValue::String(_) => "string",
            MetadataValue::Array(_) => "array",
            MetadataValue::U64(_) => "u64",
            MetadataValue::I64(_) => "i64",
            MetadataValue::F64(_) => "f64",
        }
    }

    /// Any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetadataValue::U8(v) => Some(v as u64),
            MetadataValue::U16(v) => Some(v as u64),
            MetadataValue::U32(v) => Some(v as u64),
            MetadataValue::U64(v) => Some(v),
            MetadataValue::I8(v) => u64::try_from(v).ok(),
            MetadataValue::I16(v) => u64::try_from(v).ok(),
            MetadataValue::I32(v) => u64::try_from(v).ok(),
            MetadataValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type, as i64 (u64 values beyond i64 give None).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetadataValue::I8(v) => Some(v as i64),
            MetadataValue::I16(v) => Some(v as i64),
            MetadataValue::I32(v) => Some(v as i64),
            MetadataValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// A float (f32 or f64).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(v) => Some(v as f64),
            MetadataValue::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            MetadataValue::Array(v) => Some(v),
            _ => None,
        }
    }

    /// Reads a value of type id `type_id`; `key` names it in errors.
    pub(crate) fn read(cursor: &mut Cursor<'_>, type_id: u32, key: &str) -> Result<Self, LlmError> {
        Self::read_nested(cursor, type_id, key, 0)
    }

    fn read_nested(
        cursor: &mut Cursor<'_>,
        type_id: u32,
        key: &str,
        depth: usize,
    ) -> Result<Self, LlmError> {
        use value_type as t;
        let what = format!("the value of key '{key}'");
        let value = match type_id {
            t::U8 => MetadataValue::U8(cursor.u8(&what)?),
            t::I8 => MetadataValue::I8(cursor.i8(&what)?),
            t::U16 => MetadataValue::U16(cursor.u16(&what)?),
            t::I16 => MetadataValue::I16(cursor.i16(&what)?),
            t::U32 => MetadataValue::U32(cursor.u32(&what)?),
            t::I32 => MetadataValue::I32(cursor.i32(&what)?),
            t::F32 => MetadataValue::F32(cursor.f32(&what)?),
            t::BOOL => match cursor.u8(&what)? {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                other => {
                    return Err(cursor.error(format!(
                        "key '{key}': bool value must be 0 or 1, found {other}"
                    )))
                }
            },
            t::STRING => MetadataValue::String(cursor.string(&what)?),
            t::U64 => MetadataValue::U64(cursor.u64(&what)?),
            t::I64 => MetadataValue::I64(cursor.i64(&what)?),
            t::F64 => MetadataValue::F64(cursor.f64(&what)?),
            t::ARRAY => {
                if depth >= ARRAY_DEPTH_MAX {
                    return Err(cursor.error(format!(
                        "key '{key}': arrays nested deeper than {ARRAY_DEPTH_MAX}"
                    )));
                }
                let element_type = cursor.u32(&format!("the element type of key '{key}'"))?;
                let count = cursor.u64(&format!("the element count of key '{key}'"))?;
                // Every element takes at least one byte, so a count above the bytes left is a
                // corrupt file; checking first avoids a huge allocation.
                if count > cursor.remaining() as u64 {
                    return Err(cursor.error(format!(
                        "key '{key}': array of {count} elements cannot fit in the {} bytes left (truncated or corrupt)",
                        cursor.remaining()
                    )));
                }
                let mut elements = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    elements.push(Self::read_nested(cursor, element_type, key, depth + 1)?);
                }
                MetadataValue::Array(elements)
            }
            other => {
                return Err(cursor.error(format!(
                    "key '{key}': unknown value type {other} (GGUF defines 0..=12)"
                )))
            }
        };
        Ok(value)
    }
}
