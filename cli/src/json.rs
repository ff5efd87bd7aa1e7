//! JSON ⇄ MessagePack, without the Rust types: grid's typed values are MessagePack with
//! structs as maps keyed by field name (PROTOCOL.md §8), so a JSON object is a struct, a
//! JSON string a `String` or a unit enum variant, `{"Variant": value}` a variant with data,
//! `null` a `None` or `()`, as serde's JSON form has them.

use rmpv::Value;
use serde_json::{Map, Number, Value as Json};

/// Parses `text` as one JSON value.
pub fn parse(text: &str) -> Result<Json, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("not JSON ({e}): {text:?}; strings need quotes, e.g. '\"disk-1\"' or '{{\"key\": \"a\"}}'")
    })
}

/// The MessagePack encoding of `json`.
pub fn to_msgpack(json: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &from_json(json));
    out
}

/// `bytes` (one MessagePack value) as JSON.
pub fn from_msgpack(bytes: &[u8]) -> Result<Json, String> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest)
        .map_err(|e| format!("the answer is not MessagePack: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "the answer has {} bytes after its MessagePack value",
            rest.len()
        ));
    }
    Ok(to_json(&value))
}

fn from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        Json::Object(fields) => Value::Map(
            fields
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(i)) => Json::from(i),
            _ => Json::Null,
        },
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => Json::String(match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        // Bytes as serde's JSON form has a `Vec<u8>`: an array of numbers.
        Value::Binary(b) => Json::Array(b.iter().map(|&x| Json::from(x)).collect()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => {
            let mut map = Map::new();
            for (k, v) in pairs {
                let key = match k {
                    Value::String(s) => s.as_str().map_or_else(|| k.to_string(), str::to_owned),
                    other => to_json(other).to_string(),
                };
                map.insert(key, to_json(v));
            }
            Json::Object(map)
        }
        Value::Ext(kind, data) => serde_json::json!({ "ext": kind, "data": data }),
    }
}

/// A float as JSON; NaN and the infinities, which JSON lacks, as strings.
fn float(f: f64) -> Json {
    Number::from_f64(f).map_or_else(|| Json::String(f.to_string()), Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_survives_a_round_trip_through_messagepack() {
        for v in [
            json!(null),
            json!(true),
            json!(0),
            json!(u64::MAX),
            json!(-5),
            json!(i64::MIN),
            json!(1.5),
            json!("disk-1"),
            json!([1, "two", null, [3]]),
            json!({"name": "a", "tags": ["x"], "inner": {"n": -1, "none": null}}),
            json!({"Variant": {"x": 1}}),
        ] {
            assert_eq!(from_msgpack(&to_msgpack(&v)).expect("decode"), v, "{v}");
        }
    }

    #[test]
    fn objects_become_maps_keyed_by_field_name() {
        assert_eq!(
            to_msgpack(&json!({"k": 1})),
            [0x81, 0xa1, b'k', 0x01],
            "fixmap of one, fixstr key, positive fixint"
        );
        assert_eq!(to_msgpack(&json!(null)), [0xc0]);
    }

    #[test]
    fn what_json_lacks_is_shown_rather_than_lost() {
        // A map keyed by integers, bytes, NaN: shown in a JSON form.
        let mut buf = Vec::new();
        let map = Value::Map(vec![(Value::from(7), Value::Binary(vec![1, 2]))]);
        rmpv::encode::write_value(&mut buf, &map).expect("encode");
        assert_eq!(from_msgpack(&buf).expect("decode"), json!({"7": [1, 2]}));
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &Value::F64(f64::NAN)).expect("encode");
        assert_eq!(from_msgpack(&buf).expect("decode"), json!("NaN"));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(parse("disk-1")
            .expect_err("unquoted")
            .contains("strings need quotes"));
        assert!(from_msgpack(&[0xa5, b'a']).is_err(), "truncated string");
        assert!(from_msgpack(&[0x92, 0x01]).is_err(), "truncated array");
        assert!(from_msgpack(&[0x01, 0x02])
            .expect_err("trailing bytes")
            .contains("1 bytes after"));
        assert!(from_msgpack(&[]).is_err());
    }
}
