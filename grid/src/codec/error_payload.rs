//! The payload of a message flagged [`Flags::PAYLOAD_IS_ERROR`](super::Flags::PAYLOAD_IS_ERROR):
//! a MessagePack array `[kind, message]`, `[8, message, size, limit]` for
//! [`ErrorKind::TooLarge`]. Receivers ignore elements after those they know.

use bytes::Bytes;

/// What kind of failure an error payload reports. The numeric values are the wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorKind {
    /// The handler returned an error or panicked.
    Remote = 1,
    /// No handler is registered under the id (and subroute).
    UnknownHandler = 2,
    /// The deadline passed on the handler side.
    DeadlineExceeded = 3,
    /// The call was cancelled on the handler side.
    Cancelled = 4,
    /// The handler side could not decode the payload.
    Codec = 5,
    /// The handler side found a protocol violation in this call.
    Protocol = 6,
    /// The handler side is at its limit of concurrent calls and streams for this
    /// connection; nothing was started. Retrying later may succeed.
    Busy = 7,
    /// A payload was larger than the receiver accepts (the size and the limit travel with
    /// it); only this call or stream failed.
    TooLarge = 8,
    /// The handler side is draining (it is leaving and admits no new calls); nothing was
    /// started. The call may go to another peer, or to this one once it is back.
    Draining = 9,
}

impl ErrorKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Remote,
            2 => Self::UnknownHandler,
            3 => Self::DeadlineExceeded,
            4 => Self::Cancelled,
            5 => Self::Codec,
            6 => Self::Protocol,
            7 => Self::Busy,
            8 => Self::TooLarge,
            9 => Self::Draining,
            _ => return None,
        })
    }
}

/// An error payload: its kind, a message for people and, for [`ErrorKind::TooLarge`], the
/// size that was refused and the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPayload {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
    /// For [`ErrorKind::TooLarge`]: the size refused and the limit, in bytes.
    pub sizes: Option<(u64, u64)>,
}

impl ErrorPayload {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            sizes: None,
        }
    }

    /// A payload of `size` bytes refused because it exceeds `limit`.
    pub fn too_large(size: u64, limit: u64) -> Self {
        Self {
            kind: ErrorKind::TooLarge,
            message: format!(
                "message of {size} bytes exceeds the maximum message size of {limit} bytes"
            ),
            sizes: Some((size, limit)),
        }
    }

    /// The payload's bytes.
    pub fn encode(&self) -> Bytes {
        let mut buf = Vec::with_capacity(self.message.len() + 24);
        let len = if self.sizes.is_some() { 4 } else { 2 };
        let _ = rmp::encode::write_array_len(&mut buf, len);
        let _ = rmp::encode::write_uint(&mut buf, self.kind as u64);
        let _ = rmp::encode::write_str(&mut buf, &self.message);
        if let Some((size, limit)) = self.sizes {
            let _ = rmp::encode::write_uint(&mut buf, size);
            let _ = rmp::encode::write_uint(&mut buf, limit);
        }
        Bytes::from(buf)
    }

    /// Reads an error payload. Unknown kinds read as [`ErrorKind::Remote`] so a newer
    /// peer's errors still reach the caller with their message; a TooLarge without its two
    /// numbers reads as Remote too.
    pub fn decode(payload: &[u8]) -> Result<Self, String> {
        let Wire(kind, message, sizes) =
            rmp_serde::from_slice(payload).map_err(|e| format!("bad error payload: {e}"))?;
        let kind = ErrorKind::from_u8(kind).unwrap_or(ErrorKind::Remote);
        Ok(match (kind, sizes) {
            (ErrorKind::TooLarge, None) => Self::new(ErrorKind::Remote, message),
            (ErrorKind::TooLarge, sizes) => Self {
                kind,
                message,
                sizes,
            },
            (kind, _) => Self::new(kind, message),
        })
    }
}

/// The array as read: kind, message, and for TooLarge the two numbers (other elements
/// are skipped).
struct Wire(u8, String, Option<(u64, u64)>);

impl<'de> serde::Deserialize<'de> for Wire {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Wire;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array [kind, message, ...]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Wire, A::Error> {
                use serde::de::{Error, IgnoredAny};
                let kind = a
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let message = a
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let mut sizes = None;
                if kind == ErrorKind::TooLarge as u8 {
                    if let (Some(size), Some(limit)) = (a.next_element()?, a.next_element()?) {
                        sizes = Some((size, limit));
                    }
                }
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Wire(kind, message, sizes))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// Encodes an error payload `[kind, message]`.
pub fn encode_error(kind: ErrorKind, message: &str) -> Bytes {
    ErrorPayload::new(kind, message).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_too_large_carries_its_numbers() {
        for kind in (1..=9).filter_map(ErrorKind::from_u8) {
            let e = match kind {
                ErrorKind::TooLarge => ErrorPayload::too_large(70_000, 65_536),
                kind => ErrorPayload::new(kind, "why"),
            };
            assert_eq!(ErrorPayload::decode(&e.encode()), Ok(e));
        }
        let e = ErrorPayload::too_large(5, 4);
        assert_eq!(e.sizes, Some((5, 4)));
        assert!(
            e.message.contains('5') && e.message.contains('4'),
            "{}",
            e.message
        );
    }

    #[test]
    fn what_a_newer_or_sloppier_peer_sends_still_reads() {
        let mut buf = Vec::new();
        // [10, "later", "extra"]: an unknown kind with an element after the message.
        rmp::encode::write_array_len(&mut buf, 3).expect("write to a Vec");
        rmp::encode::write_uint(&mut buf, 10).expect("write to a Vec");
        rmp::encode::write_str(&mut buf, "later").expect("write to a Vec");
        rmp::encode::write_str(&mut buf, "extra").expect("write to a Vec");
        assert_eq!(
            ErrorPayload::decode(&buf),
            Ok(ErrorPayload::new(ErrorKind::Remote, "later"))
        );
        // [8, "big"]: TooLarge without its numbers reads as Remote.
        let bare = encode_error(ErrorKind::TooLarge, "big");
        assert_eq!(
            ErrorPayload::decode(&bare),
            Ok(ErrorPayload::new(ErrorKind::Remote, "big"))
        );
        assert!(ErrorPayload::decode(&[0x91, 0x01]).is_err(), "no message");
    }
}
