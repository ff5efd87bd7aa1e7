//! The payloads of stream control messages: the ack's capacities and returned credit.

use bytes::Bytes;

/// What the handler side grants when it accepts a stream ([`Op::AckMux`](super::Op::AckMux)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Caller messages that may be in flight to the handler (0: the caller sends none).
    pub in_capacity: u32,
    /// Handler messages that may be in flight to the caller.
    pub out_capacity: u32,
}

impl Ack {
    /// The AckMux payload: a MessagePack array `[in_capacity, out_capacity]`.
    pub fn encode(self) -> Bytes {
        let mut buf = Vec::with_capacity(12);
        let _ = rmp::encode::write_array_len(&mut buf, 2);
        let _ = rmp::encode::write_uint(&mut buf, u64::from(self.in_capacity));
        let _ = rmp::encode::write_uint(&mut buf, u64::from(self.out_capacity));
        Bytes::from(buf)
    }

    /// Reads an AckMux payload.
    ///
    /// # Errors
    /// A description of what is wrong with the payload.
    pub fn decode(payload: Option<&[u8]>) -> Result<Ack, String> {
        let (in_capacity, out_capacity): (u32, u32) =
            rmp_serde::from_slice(payload.unwrap_or_default())
                .map_err(|e| format!("bad AckMux payload: {e}"))?;
        Ok(Ack {
            in_capacity,
            out_capacity,
        })
    }
}

/// The payload of an unblock message: the credit returned, as a MessagePack uint.
pub fn encode_credit(n: u32) -> Bytes {
    let mut buf = Vec::with_capacity(5);
    let _ = rmp::encode::write_uint(&mut buf, u64::from(n));
    Bytes::from(buf)
}

/// Reads the credit of an unblock message.
///
/// # Errors
/// A description of what is wrong with the payload.
pub fn decode_credit(payload: Option<&[u8]>) -> Result<u32, String> {
    let mut p = payload.ok_or("unblock without credit")?;
    rmp::decode::read_int(&mut p).map_err(|e| format!("bad credit: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_and_credit_payloads_match_protocol_md() {
        let ack = Ack {
            in_capacity: 16,
            out_capacity: 8,
        };
        assert_eq!(&ack.encode()[..], &[0x92, 0x10, 0x08]);
        assert_eq!(Ack::decode(Some(&[0x92, 0x10, 0x08])), Ok(ack));
        assert!(Ack::decode(Some(&[0x91, 0x10])).is_err());
        assert_eq!(&encode_credit(4)[..], &[0x04]);
        assert_eq!(decode_credit(Some(&[0x04])), Ok(4));
        assert!(decode_credit(None).is_err());
    }
}
