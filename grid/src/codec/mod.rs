//! The wire format: message header, ops, flags, merged frames and checksums.
//!
//! This module knows bytes and message types only: no sockets, no tasks, no clock. Every
//! function takes bytes (or a [`Message`]) and returns bytes (or messages), so it is tested
//! without I/O. PROTOCOL.md at the repository root describes the same bytes for people
//! writing a peer in another language; its test vectors are checked by the tests crate.
//!
//! Invariants:
//! - Decoding never panics and never allocates in proportion to a length it has not yet
//!   checked against the bytes actually received.
//! - A decoded message's payload is a slice of the received frame (no copy).
//! - `Some(empty)` and `None` payloads stay distinct on the wire (flag
//!   [`Flags::ZERO_LENGTH`]).

mod close;
mod error_payload;
mod fast_path;
mod frame;
pub mod handshake;
mod message;
mod resume;
mod stream;
pub(crate) mod wire;

pub use close::Close;
pub use error_payload::{encode_error, ErrorKind, ErrorPayload};
pub use fast_path::PlainHead;
pub use frame::{
    decode_frame, encode_frame, Decoded, FrameBuilder, FrameError, FrameLimits, FrameMessages,
};
pub use message::{subroute_hash, Flags, HandlerId, Message, Op};
pub(crate) use message::{DataHead, MessageRef};
pub use resume::{decode_resume, encode_resume, ResumedStream};
pub use stream::{decode_credit, encode_credit, Ack};
