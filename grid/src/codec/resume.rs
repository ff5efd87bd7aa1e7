//! The payload of a Resume message (op 18): each stream a side kept through a lost socket,
//! as it tells the peer on the new one.

use bytes::Bytes;

/// One kept stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumedStream {
    /// Whether the telling side opened the stream (else it serves it).
    pub caller: bool,
    /// The stream's mux id (the caller's).
    pub mux_id: u64,
    /// Messages the telling side received on the stream (the last sequence number).
    pub received: u32,
    /// Credit, in bytes, the telling side leaves open for the other's messages (below zero
    /// by less than one message when the last one overran it).
    pub open_credit: i64,
}

/// Encodes a list: a MessagePack array of `[caller: bool, mux_id, received, open_credit]`.
pub fn encode_resume(list: &[ResumedStream]) -> Bytes {
    let mut buf = Vec::with_capacity(4 + list.len() * 24);
    let _ = rmp::encode::write_array_len(&mut buf, list.len() as u32);
    for s in list {
        let _ = rmp::encode::write_array_len(&mut buf, 4);
        let _ = rmp::encode::write_bool(&mut buf, s.caller);
        let _ = rmp::encode::write_uint(&mut buf, s.mux_id);
        let _ = rmp::encode::write_uint(&mut buf, u64::from(s.received));
        let _ = rmp::encode::write_sint(&mut buf, s.open_credit);
    }
    Bytes::from(buf)
}

/// Decodes a list of at most `max` streams.
///
/// # Errors
/// What is wrong with the payload.
pub fn decode_resume(payload: &[u8], max: usize) -> Result<Vec<ResumedStream>, String> {
    let mut p = payload;
    let n = rmp::decode::read_array_len(&mut p).map_err(|e| format!("bad Resume: {e}"))? as usize;
    if n > max {
        return Err(format!(
            "Resume lists {n} streams, more than the {max} a side may hold"
        ));
    }
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        let bad = |e: &dyn std::fmt::Display| format!("bad Resume entry: {e}");
        let len = rmp::decode::read_array_len(&mut p).map_err(|e| bad(&e))?;
        if len < 4 {
            return Err(bad(&"fewer than 4 fields"));
        }
        let caller = rmp::decode::read_bool(&mut p).map_err(|e| bad(&e))?;
        let mux_id: u64 = rmp::decode::read_int(&mut p).map_err(|e| bad(&e))?;
        let received: u32 = rmp::decode::read_int(&mut p).map_err(|e| bad(&e))?;
        let open_credit: i64 = rmp::decode::read_int(&mut p).map_err(|e| bad(&e))?;
        for _ in 4..len {
            // Later fields are ignored (new ones may be added).
            skip_value(&mut p).map_err(|e| bad(&e))?;
        }
        list.push(ResumedStream {
            caller,
            mux_id,
            received,
            open_credit,
        });
    }
    if !p.is_empty() {
        return Err("bad Resume: trailing bytes".into());
    }
    Ok(list)
}

fn skip_value(p: &mut &[u8]) -> Result<(), String> {
    let mut de = rmp_serde::Deserializer::new(&mut *p);
    serde::de::IgnoredAny::deserialize(&mut de)
        .map(drop)
        .map_err(|e| e.to_string())
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_round_trips_and_bad_ones_are_refused() {
        let list = [
            ResumedStream {
                caller: true,
                mux_id: 1 << 32 | 7,
                received: 300,
                open_credit: -20,
            },
            ResumedStream {
                caller: false,
                mux_id: 9,
                received: 0,
                open_credit: 262_144,
            },
        ];
        let bytes = encode_resume(&list);
        assert_eq!(decode_resume(&bytes, 2), Ok(list.to_vec()));
        assert!(decode_resume(&bytes, 1).is_err(), "more than allowed");
        assert!(
            decode_resume(&bytes[..bytes.len() - 1], 2).is_err(),
            "cut short"
        );
        assert_eq!(decode_resume(&[0x90], 0), Ok(vec![]));
    }

    #[test]
    fn the_protocol_md_vector_reads_and_writes() {
        // PROTOCOL.md §9, "resume listing one stream ...".
        let bytes = [
            0x91, 0x94, 0xc3, 0xcd, 0x01, 0x2c, 0xcd, 0x01, 0x2c, 0xcd, 0x10, 0x00,
        ];
        let one = ResumedStream {
            caller: true,
            mux_id: 300,
            received: 300,
            open_credit: 4096,
        };
        assert_eq!(decode_resume(&bytes, 1), Ok(vec![one]));
        assert_eq!(&encode_resume(&[one])[..], &bytes[..]);
    }
}
