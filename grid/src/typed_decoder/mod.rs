//! Typed values decoded from MessagePack straight from the received bytes: the fast path of
//! [`crate::typed::decode`].
//!
//! The values are what `rmp_serde::encode::write_named` writes (PROTOCOL.md §8): structs as
//! maps keyed by field name (arrays are read too), `None` and `()` as nil, unit variants as
//! their name, other variants as a one-entry map from the name to the value, 128-bit
//! integers as 16 bytes. This decoder reads those with one `match` on each marker and no
//! detour through a generic value, and lends strings and bytes to the value where they lie
//! (`&str`, `&[u8]` fields borrow). It gives up, with no message, on anything it does not
//! read the way `rmp_serde` does (extension types, a unit struct's empty array, ...) and
//! on any error: the caller then decodes the same bytes with `rmp_serde`, so what is
//! accepted, and every error message, stays `rmp_serde`'s.
//!
//! Bounds: a length is checked against the bytes left before anything is allocated for it
//! (every element takes at least one byte), and nesting deeper than [`MAX_DEPTH`] gives up.

use serde::de::value::BorrowedBytesDeserializer;
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::Deserialize;

/// Deepest nesting of arrays and maps read (as `rmp_serde`'s default).
const MAX_DEPTH: u16 = 1024;

/// Why this decoder gave up (the caller decodes again with `rmp_serde`, which says why).
#[derive(Debug)]
pub(crate) struct GaveUp;

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not decoded by the fast path")
    }
}

impl std::error::Error for GaveUp {}

impl de::Error for GaveUp {
    fn custom<T: std::fmt::Display>(_why: T) -> Self {
        GaveUp
    }
}

type Result<T> = std::result::Result<T, GaveUp>;

/// Decodes a `T` from the start of `input`, borrowing from it where `T` does.
pub(crate) fn from_slice<'de, T: Deserialize<'de>>(input: &'de [u8]) -> Result<T> {
    T::deserialize(&mut Decoder { input, depth: 0 })
}

struct Decoder<'de> {
    /// What is left to read.
    input: &'de [u8],
    depth: u16,
}

/// The kinds of value a marker starts, with what the marker says of their size.
enum Head {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
}

impl<'de> Decoder<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return Err(GaveUp);
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (bytes, rest) = self.input.split_first_chunk::<N>().ok_or(GaveUp)?;
        self.input = rest;
        Ok(*bytes)
    }

    fn len<const N: usize>(&mut self) -> Result<usize> {
        let mut wide = [0u8; 8];
        let bytes = self.be::<N>()?;
        wide[8 - N..].copy_from_slice(&bytes);
        usize::try_from(u64::from_be_bytes(wide)).map_err(|_| GaveUp)
    }

    fn peek(&self) -> Result<u8> {
        self.input.first().copied().ok_or(GaveUp)
    }

    /// Reads the next marker (and the size or the value it carries).
    fn head(&mut self) -> Result<Head> {
        let (&m, rest) = self.input.split_first().ok_or(GaveUp)?;
        self.input = rest;
        Ok(match m {
            0x00..=0x7f => Head::Uint(u64::from(m)),
            0x80..=0x8f => Head::Map(usize::from(m & 0x0f)),
            0x90..=0x9f => Head::Array(usize::from(m & 0x0f)),
            0xa0..=0xbf => Head::Str(usize::from(m & 0x1f)),
            0xc0 => Head::Nil,
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => Head::Bin(self.len::<1>()?),
            0xc5 => Head::Bin(self.len::<2>()?),
            0xc6 => Head::Bin(self.len::<4>()?),
            0xca => Head::F32(f32::from_be_bytes(self.be()?)),
            0xcb => Head::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Head::Uint(u64::from(u8::from_be_bytes(self.be()?))),
            0xcd => Head::Uint(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Head::Uint(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Head::Uint(u64::from_be_bytes(self.be()?)),
            0xd0 => Head::Int(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Head::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Head::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Head::Int(i64::from_be_bytes(self.be()?)),
            0xd9 => Head::Str(self.len::<1>()?),
            0xda => Head::Str(self.len::<2>()?),
            0xdb => Head::Str(self.len::<4>()?),
            0xdc => Head::Array(self.len::<2>()?),
            0xdd => Head::Array(self.len::<4>()?),
            0xde => Head::Map(self.len::<2>()?),
            0xdf => Head::Map(self.len::<4>()?),
            0xe0..=0xff => Head::Int(i64::from(m as i8)),
            // 0xc1 (never used) and the extension types: `rmp_serde`'s business.
            _ => return Err(GaveUp),
        })
    }

    /// `elements` values follow (maps: twice as many): there must be a byte for each.
    fn room_for(&self, elements: usize) -> Result<()> {
        (elements <= self.input.len()).then_some(()).ok_or(GaveUp)
    }

    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(GaveUp);
        }
        self.depth += 1;
        let r = read(self);
        self.depth -= 1;
        r
    }

    fn str(&mut self, len: usize) -> Result<&'de str> {
        std::str::from_utf8(self.take(len)?).map_err(|_| GaveUp)
    }

    /// A name (a field's, a variant's) as the bytes it is: matched against the names a
    /// type knows without checking that it is UTF-8 first (a tenth of a typed record's
    /// cost, measured, for its four field names). Types whose names are matched by
    /// `#[derive(Deserialize)]` read bytes; a hand-written one that does not fails here,
    /// and the payload goes to `rmp_serde`.
    fn name<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        if let Some(len) = self.fixstr() {
            return visitor.visit_borrowed_bytes(self.take(len)?);
        }
        match self.head()? {
            Head::Str(len) => visitor.visit_borrowed_bytes(self.take(len)?),
            head => self.visit(head, visitor),
        }
    }

    /// The length of a string of at most 31 bytes (the common case: names, short values),
    /// its marker taken; `None` (nothing taken) for any other marker.
    #[inline]
    fn fixstr(&mut self) -> Option<usize> {
        let (&m, rest) = self.input.split_first()?;
        (m & 0xe0 == 0xa0).then(|| {
            self.input = rest;
            usize::from(m & 0x1f)
        })
    }

    /// A string where one is expected, short ones on a path of their own.
    fn string<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        if let Some(len) = self.fixstr() {
            return visitor.visit_borrowed_str(self.str(len)?);
        }
        let head = self.head()?;
        self.visit(head, visitor)
    }

    fn visit<V: Visitor<'de>>(&mut self, head: Head, visitor: V) -> Result<V::Value> {
        match head {
            Head::Nil => visitor.visit_unit(),
            Head::Bool(b) => visitor.visit_bool(b),
            Head::Uint(n) => visitor.visit_u64(n),
            Head::Int(n) => visitor.visit_i64(n),
            Head::F32(x) => visitor.visit_f32(x),
            Head::F64(x) => visitor.visit_f64(x),
            Head::Str(len) => {
                let s = self.str(len)?;
                visitor.visit_borrowed_str(s)
            }
            Head::Bin(len) => {
                let b = self.take(len)?;
                visitor.visit_borrowed_bytes(b)
            }
            Head::Array(len) => {
                self.room_for(len)?;
                self.nested(|d| {
                    let mut seq = Elements { d, left: len };
                    let v = visitor.visit_seq(&mut seq)?;
                    // Every element read: what the visitor left is not for us to guess.
                    (seq.left == 0).then_some(v).ok_or(GaveUp)
                })
            }
            Head::Map(len) => {
                self.room_for(len.saturating_mul(2))?;
                self.nested(|d| {
                    let mut map = Elements { d, left: len };
                    let v = visitor.visit_map(&mut map)?;
                    (map.left == 0).then_some(v).ok_or(GaveUp)
                })
            }
        }
    }

    /// Skips one value (a field the type does not know).
    fn skip(&mut self) -> Result<()> {
        match self.head()? {
            Head::Str(len) | Head::Bin(len) => self.take(len).map(drop),
            Head::Array(len) => self.nested(|d| (0..len).try_for_each(|_| d.skip())),
            Head::Map(len) => {
                self.nested(|d| (0..len.saturating_mul(2)).try_for_each(|_| d.skip()))
            }
            _ => Ok(()),
        }
    }

    fn wide<V: Visitor<'de>>(&mut self, visitor: V, signed: bool) -> Result<V::Value> {
        match self.head()? {
            Head::Bin(16) => {
                let b: [u8; 16] = self.be()?;
                if signed {
                    visitor.visit_i128(i128::from_be_bytes(b))
                } else {
                    visitor.visit_u128(u128::from_be_bytes(b))
                }
            }
            _ => Err(GaveUp),
        }
    }
}

/// The elements of an array, or the entries of a map, being read.
struct Elements<'a, 'de> {
    d: &'a mut Decoder<'de>,
    left: usize,
}

impl<'de> Elements<'_, 'de> {
    /// The next element (or key), if any is left.
    fn next<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.d).map(Some)
    }
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = GaveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        self.next(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> MapAccess<'de> for Elements<'_, 'de> {
    type Error = GaveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        self.next(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.d)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An enum: a unit variant's name, or a one-entry map from a variant's name to its value.
struct Variant<'a, 'de> {
    d: &'a mut Decoder<'de>,
    /// The name was a map's key: a value follows it.
    valued: bool,
}

impl<'de> EnumAccess<'de> for Variant<'_, 'de> {
    type Error = GaveUp;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let name = match self.d.head()? {
            Head::Str(len) => self.d.take(len)?,
            _ => return Err(GaveUp),
        };
        let v = seed.deserialize(BorrowedBytesDeserializer::new(name))?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_, 'de> {
    type Error = GaveUp;

    fn unit_variant(self) -> Result<()> {
        (!self.valued).then_some(()).ok_or(GaveUp)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        if !self.valued {
            return Err(GaveUp);
        }
        seed.deserialize(self.d)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        if !self.valued {
            return Err(GaveUp);
        }
        de::Deserializer::deserialize_any(self.d, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.tuple_variant(0, visitor)
    }
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = GaveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let head = self.head()?;
        self.visit(head, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == 0xc0 {
            self.take(1)?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == "_ExtStruct" {
            // `rmp_serde`'s extension type.
            return Err(GaveUp);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value> {
        // Written as an empty array, read by `rmp_serde` in its own way.
        Err(GaveUp)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek()? {
            0xa0..=0xbf | 0xd9..=0xdb => visitor.visit_enum(Variant {
                d: self,
                valued: false,
            }),
            0x81 => {
                self.take(1)?;
                self.nested(|d| visitor.visit_enum(Variant { d, valued: true }))
            }
            _ => Err(GaveUp),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.name(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip()?;
        visitor.visit_unit()
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.wide(visitor, true)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.wide(visitor, false)
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.string(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char bytes byte_buf unit
        seq tuple tuple_struct map struct
    }
}

#[cfg(test)]
mod tests;
