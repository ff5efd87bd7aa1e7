//! Moving the handshake's two messages over a fresh socket, before any task runs on it.

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::codec::{decode_frame, FrameLimits, Message};
use crate::error::{Error, Result};

/// The socket type of a connection.
pub(crate) type Ws = WebSocketStream<TcpStream>;

pub(crate) async fn send_message(ws: &mut Ws, msg: &Message, checksum: bool) -> Result<()> {
    ws.send(WsMessage::Binary(msg.encode(checksum).into()))
        .await
        .map_err(|e| Error::Unreachable(format!("handshake write failed: {e}")))
}

/// Reads the next protocol message; the handshake never merges.
pub(crate) async fn recv_message(ws: &mut Ws, limits: FrameLimits) -> Result<Message> {
    loop {
        let frame = match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => b,
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(other)) => {
                return Err(Error::Protocol(format!(
                    "expected a binary handshake frame, got {other:?}"
                )))
            }
            Some(Err(e)) => return Err(Error::Unreachable(format!("handshake read failed: {e}"))),
            None => {
                return Err(Error::Unreachable(
                    "socket closed during the handshake".into(),
                ))
            }
        };
        let mut messages = decode_frame(&frame, limits)
            .map_err(|e| Error::Protocol(format!("bad handshake frame: {e}")))?;
        return match (messages.pop(), messages.is_empty()) {
            (Some(m), true) => Ok(m),
            _ => Err(Error::Protocol("merged frame during the handshake".into())),
        };
    }
}
