//! The payloads of stream control messages: the ack's capacities and returned credit.

use bytes::Bytes;

/// What the handler side grants when it accepts a stream ([`Op::AckMux`](super::Op::AckMux)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The window, in bytes, granted for the caller's messages (0: the caller sends none).
    pub in_window: u64,
}

impl Ack {
    /// The AckMux payload: a MessagePack array `[in_window]`.
    pub fn encode(self) -> Bytes {
        let mut buf = Vec::with_capacity(10);
        let _ = rmp::encode::write_array_len(&mut buf, 1);
        let _ = rmp::encode::write_uint(&mut buf, self.in_window);
        Bytes::from(buf)
    }

    /// Reads an AckMux payload (elements after those known are ignored).
    ///
    /// # Errors
    /// A description of what is wrong with the payload.
    pub fn decode(payload: Option<&[u8]>) -> Result<Ack, String> {
        let bad = |e: &dyn std::fmt::Display| format!("bad AckMux payload: {e}");
        let mut p = payload.unwrap_or_default();
        let len = rmp::decode::read_array_len(&mut p).map_err(|e| bad(&e))?;
        if len == 0 {
            return Err(bad(&"an empty array (expected [in_window])"));
        }
        let in_window = rmp::decode::read_int(&mut p).map_err(|e| bad(&e))?;
        Ok(Ack { in_window })
    }
}

/// The payload of an unblock message: the credit returned, in bytes, as a MessagePack uint.
pub fn encode_credit(n: u64) -> Bytes {
    let mut buf = Vec::with_capacity(9);
    let _ = rmp::encode::write_uint(&mut buf, n);
    Bytes::from(buf)
}

/// Reads the credit (bytes) of an unblock message.
///
/// # Errors
/// A description of what is wrong with the payload.
pub fn decode_credit(payload: Option<&[u8]>) -> Result<u64, String> {
    let mut p = payload.ok_or("unblock without credit")?;
    rmp::decode::read_int(&mut p).map_err(|e| format!("bad credit: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_and_credit_payloads_match_protocol_md() {
        let ack = Ack { in_window: 262_144 };
        assert_eq!(&ack.encode()[..], &[0x91, 0xce, 0x00, 0x04, 0x00, 0x00]);
        assert_eq!(
            Ack::decode(Some(&[0x91, 0xce, 0x00, 0x04, 0x00, 0x00])),
            Ok(ack)
        );
        assert_eq!(
            Ack::decode(Some(&[0x92, 0x10, 0x08])),
            Ok(Ack { in_window: 16 }),
            "later elements are ignored"
        );
        assert!(Ack::decode(Some(&[0x90])).is_err());
        assert!(Ack::decode(None).is_err());
        assert_eq!(&encode_credit(4096)[..], &[0xcd, 0x10, 0x00]);
        assert_eq!(decode_credit(Some(&[0x04])), Ok(4));
        assert!(decode_credit(None).is_err());
    }
}
