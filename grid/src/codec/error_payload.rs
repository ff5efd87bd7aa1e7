//! The payload of a message flagged [`Flags::PAYLOAD_IS_ERROR`](super::Flags::PAYLOAD_IS_ERROR):
//! a MessagePack array `[kind, message]`.

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
            _ => return None,
        })
    }
}

/// Encodes an error payload.
pub fn encode_error(kind: ErrorKind, message: &str) -> Bytes {
    let mut buf = Vec::with_capacity(message.len() + 8);
    let _ = rmp::encode::write_array_len(&mut buf, 2);
    let _ = rmp::encode::write_uint(&mut buf, kind as u64);
    let _ = rmp::encode::write_str(&mut buf, message);
    Bytes::from(buf)
}

/// Decodes an error payload. Unknown kinds decode as [`ErrorKind::Remote`] so a newer peer's
/// errors still reach the caller with their message.
pub fn decode_error(payload: &[u8]) -> Result<(ErrorKind, String), String> {
    let (kind, message): (u8, String) =
        rmp_serde::from_slice(payload).map_err(|e| format!("bad error payload: {e}"))?;
    Ok((
        ErrorKind::from_u8(kind).unwrap_or(ErrorKind::Remote),
        message,
    ))
}
