//! The fast decoder reads what `rmp_serde` writes exactly as `rmp_serde` reads it, gives
//! up (never panics, never allocates beyond the input) on anything else.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::{from_slice, GaveUp};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, String),
    Struct { w: u16, h: Option<u16> },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Newtype(u64);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Pair(i8, Option<String>);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Record {
    name: String,
    size: u64,
    mod_time: i64,
    tags: Vec<String>,
    ratio: f64,
    small: f32,
    flag: bool,
    letter: char,
    wide: i128,
    huge: u128,
    maybe: Option<u32>,
    nothing: (),
    shapes: Vec<Shape>,
    newtype: Newtype,
    pair: Pair,
    by_name: BTreeMap<String, i16>,
    by_id: HashMap<u32, Vec<u8>>,
    nested: Option<Box<Record>>,
}

fn record(seed: u64, nested: bool) -> Record {
    Record {
        name: "x".repeat((seed % 300) as usize),
        size: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        mod_time: -(seed as i64),
        tags: (0..seed % 20).map(|i| format!("tag-{i}-é")).collect(),
        ratio: seed as f64 / 7.0,
        small: seed as f32 * 0.5,
        flag: seed % 2 == 0,
        letter: char::from_u32(0x61 + (seed % 26) as u32).unwrap_or('a'),
        wide: -(i128::from(seed) << 70),
        huge: u128::from(seed) << 100,
        maybe: (seed % 3 != 0).then_some(seed as u32),
        nothing: (),
        shapes: vec![
            Shape::Unit,
            Shape::Newtype(-(seed as i32)),
            Shape::Tuple(seed as u8, "t".into()),
            Shape::Struct {
                w: seed as u16,
                h: None,
            },
        ],
        newtype: Newtype(seed),
        pair: Pair(seed as i8, Some("p".into())),
        by_name: (0..seed % 5).map(|i| (format!("k{i}"), i as i16)).collect(),
        by_id: (0..seed % 4)
            .map(|i| (i as u32, vec![i as u8; 3]))
            .collect(),
        nested: nested.then(|| Box::new(record(seed + 1, false))),
    }
}

/// Encodes `v` as grid does, and checks the fast decoder reads it, as `rmp_serde` does.
fn same<T>(v: &T)
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + Debug,
{
    let bytes = rmp_serde::to_vec_named(v).expect("encode");
    let fast: T = from_slice(&bytes).expect("the fast path reads it");
    let slow: T = rmp_serde::from_slice(&bytes).expect("rmp_serde reads it");
    assert_eq!(fast, slow);
    assert_eq!(&fast, v);
}

#[test]
fn every_kind_of_value_reads_as_rmp_serde_reads_it() {
    for seed in [0, 1, 2, 3, 17, 255, 256, 70_000, u64::MAX / 3] {
        same(&record(seed, true));
    }
    same(&(
        1u8,
        -1i8,
        300u16,
        -300i16,
        70_000u32,
        -70_000i32,
        u64::MAX,
        i64::MIN,
    ));
    same(&(
        f32::MIN_POSITIVE,
        f64::MAX,
        String::new(),
        "a".repeat(70_000),
    ));
    same(&vec![7u8; 70_000]);
    same(&Some(Some(3u8)));
    same(&vec![Shape::Unit, Shape::Newtype(1)]);
}

#[test]
fn unknown_fields_are_skipped_and_missing_options_are_none() {
    #[derive(Serialize)]
    struct Wide {
        keep: u8,
        extra: Record,
        more: Vec<Shape>,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    struct Narrow {
        keep: u8,
        absent: Option<String>,
    }
    let bytes = rmp_serde::to_vec_named(&Wide {
        keep: 9,
        extra: record(5, true),
        more: vec![Shape::Unit],
    })
    .expect("encode");
    let narrow: Narrow = from_slice(&bytes).expect("fast");
    assert_eq!(
        narrow,
        Narrow {
            keep: 9,
            absent: None
        }
    );
}

#[test]
fn strings_and_bytes_are_borrowed_where_they_lie() {
    #[derive(Serialize)]
    struct Owned {
        name: String,
        data: serde_bytes_like::Bin,
    }
    #[derive(Deserialize)]
    struct View<'a> {
        name: &'a str,
        data: &'a [u8],
    }
    let bytes = rmp_serde::to_vec_named(&Owned {
        name: "borrowed".into(),
        data: serde_bytes_like::Bin(vec![1, 2, 3]),
    })
    .expect("encode");
    let v: View<'_> = from_slice(&bytes).expect("fast");
    let lies = bytes.as_ptr_range();
    assert_eq!((v.name, v.data), ("borrowed", &[1u8, 2, 3][..]));
    assert!(lies.contains(&v.name.as_ptr()) && lies.contains(&v.data.as_ptr()));
}

/// A byte string written as MessagePack `bin` (what `serde_bytes` does).
mod serde_bytes_like {
    pub struct Bin(pub Vec<u8>);

    impl serde::Serialize for Bin {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
}

#[test]
fn what_it_does_not_read_as_rmp_serde_does_it_leaves_to_rmp_serde() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Unit;
    let unit = rmp_serde::to_vec_named(&Unit).expect("encode");
    assert!(
        from_slice::<Unit>(&unit).is_err(),
        "a unit struct goes to rmp_serde"
    );
    let read: Unit = rmp_serde::from_slice(&unit).expect("rmp_serde reads it");
    assert_eq!(read, Unit);
    // An extension type, an unused marker, a truncated string.
    for bad in [&[0xd4, 1, 2][..], &[0xc1], &[0xa5, b'a']] {
        assert!(from_slice::<String>(bad).is_err());
    }
    // A tuple shorter than its array: rmp_serde's call.
    let three = rmp_serde::to_vec_named(&(1u8, 2u8, 3u8)).expect("encode");
    assert!(from_slice::<(u8, u8)>(&three).is_err());
}

#[test]
fn lengths_beyond_the_input_and_deep_nesting_give_up_without_allocating() {
    // An array and a map claiming 2^32 - 1 elements, a string claiming 4 GiB.
    for bad in [
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0][..],
        &[0xdf, 0xff, 0xff, 0xff, 0xff, 0, 0],
        &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
    ] {
        assert!(matches!(from_slice::<Vec<u8>>(bad), Err(GaveUp)));
        assert!(from_slice::<BTreeMap<u8, u8>>(bad).is_err());
        assert!(from_slice::<String>(bad).is_err());
    }
    // 100,000 nested arrays: no stack overflow.
    let deep = vec![0x91u8; 100_000];
    assert!(from_slice::<serde::de::IgnoredAny>(&deep).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_records_read_as_rmp_serde_reads_them(seed in any::<u64>(), nested in any::<bool>()) {
        same(&record(seed, nested));
    }

    #[test]
    fn random_bytes_never_panic_and_never_read_differently(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        // Whatever the fast path accepts, rmp_serde reads the same.
        if let Ok(fast) = from_slice::<Vec<(String, Option<i64>)>>(&bytes) {
            let slow: Vec<(String, Option<i64>)> = rmp_serde::from_slice(&bytes).expect("rmp_serde reads it too");
            prop_assert_eq!(fast, slow);
        }
        if let Ok(fast) = from_slice::<Shape>(&bytes) {
            let slow: Shape = rmp_serde::from_slice(&bytes).expect("rmp_serde reads it too");
            prop_assert_eq!(fast, slow);
        }
        let _ = from_slice::<Record>(&bytes);
    }
}
