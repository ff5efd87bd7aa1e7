//! A message whose payload is over this side's maximum message size.
//!
//! The peer should have kept within the size agreed in the handshake (PROTOCOL.md §1), but
//! one that does not costs only its own call or stream: it fails with a TooLarge error
//! naming the size and the limit, on both sides, and the connection carries on. The payload
//! was never held whole: a single message is at most a frame, which the reader bounds, and
//! a chunked one is dropped part by part as it arrives (`assembly.rs`). A connection
//! message (a ping, a credit) over the limit has no call to fail: that is a protocol error.

use std::time::Instant;

use super::streams::Ending;
use super::violation::Violation;
use super::{Engine, Key, Side};
use crate::codec::{ErrorPayload, Message, Op};
use crate::error::Error;

impl Engine {
    /// `msg` (its payload gone) carried `size` bytes, over the limit.
    ///
    /// # Errors
    /// When the message has no call or stream of its own to fail, or the peer keeps
    /// sending refused calls without reading the refusals.
    pub(super) fn on_oversize(
        &mut self,
        now: Instant,
        msg: &Message,
        size: usize,
    ) -> Result<(), Violation> {
        let limit = self.config.max_message_size;
        let failure = ErrorPayload::too_large(size as u64, limit as u64);
        let error = Error::MessageTooLarge { size, limit };
        tracing::debug!(op = ?msg.op, mux = msg.mux_id, size, limit, "payload over the limit");
        match msg.op {
            Op::Request | Op::ConnectMux => {
                if self.handler_ids.contains_key(&msg.mux_id) {
                    return Err(Violation::Broken(format!(
                        "mux id {} reused while in flight",
                        msg.mux_id
                    )));
                }
                let op = match msg.op {
                    Op::Request => Op::Response,
                    _ => Op::MuxConnectError,
                };
                if self.push_refusal(Message::failure_to(op, msg, &failure)) {
                    Ok(())
                } else {
                    Err(Violation::OverLimit("the peer keeps sending calls over the maximum message size without reading the refusals".into()))
                }
            }
            Op::Response => {
                self.answered(msg.mux_id, Err(error));
                Ok(())
            }
            Op::MuxServerMsg => {
                if let Some(key) = self.caller_stream(msg.mux_id) {
                    self.fail_stream(Side::Caller, key, failure, error);
                }
                Ok(())
            }
            Op::MuxClientMsg => {
                if let Some(key) = self.handler_stream(msg.mux_id, now) {
                    self.fail_stream(Side::Handler, key, failure, error);
                }
                Ok(())
            }
            op => Err(Violation::Broken(format!(
                "{op:?} with a payload of {size} bytes, over the maximum message size of {limit} bytes"
            ))),
        }
    }

    fn fail_stream(&mut self, side: Side, key: Key, failure: ErrorPayload, error: Error) {
        self.end_stream(side, key, Ending::failed(failure, error));
    }
}
