//! Turning a response message into a call's result, and an error into wire form.

use bytes::Bytes;

use crate::codec::{decode_error, ErrorKind, Flags, HandlerId, Message};
use crate::error::{Error, RemoteError, Result};

/// The result a caller gets from a [`Op::Response`](crate::codec::Op::Response).
pub(crate) fn response_outcome(
    msg: Message,
    handler: HandlerId,
    subroute: Option<&str>,
) -> Result<Option<Bytes>> {
    if !msg.flags.contains(Flags::PAYLOAD_IS_ERROR) {
        return Ok(msg.payload);
    }
    Err(error_of(msg.payload.as_deref(), handler, subroute))
}

/// The error carried by a message flagged PAYLOAD_IS_ERROR.
pub(crate) fn payload_error(msg: &Message) -> Error {
    error_of(msg.payload.as_deref(), msg.handler, None)
}

fn error_of(payload: Option<&[u8]>, handler: HandlerId, subroute: Option<&str>) -> Error {
    let (kind, message) = match decode_error(payload.unwrap_or_default()) {
        Ok(decoded) => decoded,
        Err(why) => return Error::Protocol(why),
    };
    match kind {
        ErrorKind::Remote => Error::Remote(RemoteError::new(message)),
        ErrorKind::UnknownHandler => Error::UnknownHandler {
            handler,
            subroute: subroute.map(str::to_owned),
        },
        ErrorKind::DeadlineExceeded => Error::DeadlineExceeded,
        ErrorKind::Cancelled => Error::Cancelled,
        ErrorKind::Codec => Error::Codec(message),
        ErrorKind::Protocol => Error::Protocol(message),
    }
}
