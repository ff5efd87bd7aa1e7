//! Moving the handshake's two messages over a freshly upgraded socket, before any task runs
//! on it.

use tokio::net::TcpStream;
use uuid::Uuid;

use super::lost::Lost;
use super::websocket::{FrameReader, FrameWriter, Incoming, Role};
use crate::codec::handshake::Terms;
use crate::codec::{decode_frame, Close, FrameLimits, Message};
use crate::error::{Error, Result};

/// A socket that passed the handshake, with the remote's instance id and the limits it
/// announced.
pub(crate) struct Accepted {
    pub(crate) reader: FrameReader,
    pub(crate) writer: FrameWriter,
    pub(crate) instance: Uuid,
    pub(crate) checksum: bool,
    pub(crate) peer: Terms,
}

/// Splits an upgraded socket into its framed read and write halves.
///
/// The upgrade must not have read past the HTTP exchange: it does not, because neither side
/// sends a WebSocket frame before the upgrade completes on both ends (the dialer waits for
/// the 101 before sending Connect, the acceptor waits for Connect before answering).
pub(crate) fn framed(tcp: TcpStream, role: Role, max_frame: usize) -> (FrameReader, FrameWriter) {
    let (read, write) = tcp.into_split();
    (
        FrameReader::new(Box::new(read), role, max_frame),
        FrameWriter::new(Box::new(write), role),
    )
}

/// Splits an upgraded TLS stream (or any other stream) into framed halves.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn framed_stream<S>(
    stream: S,
    role: Role,
    max_frame: usize,
) -> (FrameReader, FrameWriter)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    (
        FrameReader::new(Box::new(read), role, max_frame),
        FrameWriter::new(Box::new(write), role),
    )
}

/// Sends a handshake message; these always carry a checksum (whether later messages do is
/// what the handshake agrees).
pub(crate) async fn send_message(w: &mut FrameWriter, msg: &Message) -> Result<()> {
    w.binary(&msg.encode(true))
        .await
        .map_err(|e| Error::Unreachable(format!("handshake write failed: {e}")))
}

/// Ends a handshake that failed with `err` with a close frame saying why: 1008 for a
/// refusal, 1002 for a broken handshake, 1000 otherwise. A peer that does not read is not
/// waited for.
pub(crate) async fn close_after(w: &mut FrameWriter, err: &Error) {
    let close = match err {
        Error::Rejected(why) => Close::new(Close::POLICY, why.as_str()),
        Error::Protocol(why) => Close::new(Close::PROTOCOL_ERROR, why.as_str()),
        other => Close::new(Close::NORMAL, other.to_string()),
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.close(&close)).await;
}

/// Reads the next protocol message; the handshake never merges, and its messages must carry
/// a checksum.
pub(crate) async fn recv_message(r: &mut FrameReader, limits: FrameLimits) -> Result<Message> {
    let limits = limits.requiring_checksums(true);
    loop {
        let frame = match r.next().await {
            Ok(Incoming::Binary(b)) => b,
            Ok(Incoming::Ping(_)) => continue,
            Ok(Incoming::Close(close)) => {
                return Err(match close {
                    Some(c) if c.is_violation() => Error::Protocol(format!(
                        "the peer closed the socket during the handshake: {c}"
                    )),
                    Some(c) => Error::Unreachable(format!(
                        "the peer closed the socket during the handshake: {c}"
                    )),
                    None => {
                        Error::Unreachable("the peer closed the socket during the handshake".into())
                    }
                })
            }
            Err(Lost::Violation(close)) => return Err(Error::Protocol(close.reason)),
            Err(why) => return Err(Error::Unreachable(format!("handshake failed: {why}"))),
        };
        let mut messages = decode_frame(&frame, limits)
            .map_err(|e| Error::Protocol(format!("bad handshake frame: {e}")))?;
        return match (messages.pop(), messages.is_empty()) {
            (Some(m), true) => Ok(m),
            _ => Err(Error::Protocol("merged frame during the handshake".into())),
        };
    }
}
