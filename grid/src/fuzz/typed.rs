//! The typed decoder's fast path against `rmp_serde` on arbitrary bytes: whatever the fast
//! path reads, `rmp_serde` reads the same; nothing panics.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::IgnoredAny;
use serde::Deserialize;

// Fields are read only through `Debug`, which compares the two decodings.
#[allow(dead_code)]
#[derive(Deserialize, Debug)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, String),
    Struct { w: u16, h: Option<u16> },
}

#[allow(dead_code)]
#[derive(Deserialize, Debug)]
struct Record {
    name: String,
    size: u64,
    tags: Vec<String>,
    shape: Option<Shape>,
    by_name: BTreeMap<String, (bool, f64)>,
    wide: Option<i128>,
}

/// Decodes `bytes` as several types both ways; panics if the two disagree.
pub fn typed_decoder(bytes: &[u8]) {
    same::<Record>(bytes);
    same::<Vec<Shape>>(bytes);
    same::<Vec<(String, Option<i64>)>>(bytes);
    same::<(u128, char, f32, Vec<u8>)>(bytes);
    let _ = crate::typed_decoder::from_slice::<IgnoredAny>(bytes);
}

fn same<T>(bytes: &[u8])
where
    T: for<'de> Deserialize<'de> + Debug,
{
    if let Ok(fast) = crate::typed_decoder::from_slice::<T>(bytes) {
        let slow: T = match rmp_serde::from_slice(bytes) {
            Ok(slow) => slow,
            Err(e) => panic!("the fast path read {fast:?} where rmp_serde fails: {e}"),
        };
        // Compared as printed: a NaN read both ways is the same value, and unequal to itself.
        assert_eq!(
            format!("{fast:?}"),
            format!("{slow:?}"),
            "the fast path and rmp_serde disagree"
        );
    }
}
