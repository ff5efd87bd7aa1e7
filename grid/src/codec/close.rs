//! The WebSocket close frame's payload (RFC 6455 §5.5.1): a status code and a reason.
//!
//! grid ends every socket with one (PROTOCOL.md §1): the side that finds the peer breaking
//! the protocol says what was wrong, with code 1002, or 1008 when the peer went past one
//! of this side's limits; a refused handshake says why with 1008; a node shutting down
//! says so with 1001; any other end is 1000.

/// A close frame's status code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The status code.
    pub code: u16,
    /// Why, for people (cut to fit the frame: at most 123 bytes of UTF-8).
    pub reason: String,
}

/// Most bytes of reason a close frame carries (its payload is at most 125 bytes).
const MAX_REASON: usize = 123;

impl Close {
    /// A normal end.
    pub const NORMAL: u16 = 1000;
    /// The node is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The peer went past a limit, or was refused.
    pub const POLICY: u16 = 1008;
    /// The peer sent a WebSocket message larger than this side reads.
    pub const TOO_BIG: u16 = 1009;

    /// A close with `code`; `reason` is cut at a character boundary to fit the frame.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Self { code, reason }
    }

    /// The frame's payload: the code (big-endian), then the reason.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(2 + self.reason.len());
        payload.extend_from_slice(&self.code.to_be_bytes());
        payload.extend_from_slice(self.reason.as_bytes());
        payload
    }

    /// Reads a close frame's payload: `None` when it carries no code (an empty payload, or
    /// a single byte, which RFC 6455 does not allow). A reason that is not UTF-8 is read
    /// lossily.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let (code, reason) = payload.split_first_chunk::<2>()?;
        Some(Self::new(
            u16::from_be_bytes(*code),
            String::from_utf8_lossy(reason).into_owned(),
        ))
    }

    /// Whether it reports a broken protocol or limit (codes 1002, 1003, 1007, 1008, 1009).
    pub fn is_violation(&self) -> bool {
        matches!(self.code, 1002 | 1003 | 1007 | 1008 | 1009)
    }
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_round_trips_and_a_long_reason_is_cut_at_a_character() {
        let c = Close::new(Close::PROTOCOL_ERROR, "bad frame");
        assert_eq!(Close::decode(&c.encode()), Some(c));
        let long = "é".repeat(100);
        let cut = Close::new(Close::POLICY, long);
        assert!(cut.encode().len() <= 125);
        assert!(cut.reason.chars().all(|c| c == 'é'));
        assert_eq!(Close::decode(&[]), None);
        assert_eq!(Close::decode(&[3]), None);
        assert_eq!(
            Close::decode(&[0x03, 0xe8]),
            Some(Close::new(Close::NORMAL, ""))
        );
    }
}
