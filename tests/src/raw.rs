//! A raw WebSocket peer for tests that speak the protocol by hand.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use grid::codec::handshake::{self, ConnectRequest, ConnectResponse};
use grid::codec::{decode_frame, FrameLimits, Message, Op};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::{builder, dialer_first, listener, TOKEN};

/// An acceptor named after the second of `dialer_first`, listing the first as its peer.
pub async fn acceptor() -> (grid::Manager, String) {
    let (d, a) = dialer_first();
    let (l, url) = listener().await;
    // The acceptor's own URL for the dialer is never used (it does not dial).
    let m = builder(a)
        .peer(d, "ws://127.0.0.1:1/grid/v1")
        .build()
        .expect("build");
    tokio::spawn(m.clone().serve(l));
    (m, url)
}

/// A raw tokio-tungstenite client socket.
pub type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Upgrades to a WebSocket at `url`, with `Authorization: Bearer <token>` if given.
pub async fn upgrade(url: &str, token: Option<&str>) -> Result<RawSocket, tungstenite::Error> {
    let mut req = url.into_client_request().expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status of a refused upgrade.
pub fn http_status(r: Result<impl Sized, tungstenite::Error>) -> u16 {
    match r {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

/// A Connect from `host` with the test token and `clock_ms`, announcing protocol version 2
/// (an absent version means 1, which grid refuses) and every other optional field absent.
pub fn connect_request(host: &str, clock_ms: i64) -> ConnectRequest {
    ConnectRequest {
        host: host.into(),
        instance: grid::Uuid::new_v4().to_string(),
        clock_ms,
        token: TOKEN.into(),
        terms: handshake::Terms {
            version: Some(handshake::PROTOCOL_VERSION),
            ..handshake::Terms::default()
        },
    }
}

/// The encoding of a hand-made Connect message (with checksum).
pub fn connect_message(host: &str, clock_ms: i64) -> Vec<u8> {
    encode_connect(connect_request(host, clock_ms), true)
}

fn encode_connect(req: ConnectRequest, checksum: bool) -> Vec<u8> {
    let mut m = Message::new(Op::Connect);
    m.payload = Some(Bytes::from(handshake::encode(&req)));
    m.encode(checksum)
}

/// Upgrades with the right token, sends `req` as a Connect (with a checksum or not) and
/// returns the answer; `None` if the acceptor ended the socket without one.
pub async fn offer(url: &str, req: ConnectRequest, checksum: bool) -> Option<ConnectResponse> {
    let mut ws = upgrade(url, Some(TOKEN)).await.expect("upgrade");
    ws.send(WsMessage::Binary(encode_connect(req, checksum).into()))
        .await
        .expect("send");
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => {
                let m = decode_frame(&b, FrameLimits::new(1 << 20)).expect("decode");
                return Some(connect_response(&m[0]));
            }
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// The next grid messages on a raw socket (WebSocket pings and pongs are skipped).
pub async fn next_messages(ws: &mut RawSocket) -> Vec<Message> {
    loop {
        match ws.next().await.expect("a frame").expect("a good frame") {
            WsMessage::Binary(b) => {
                return decode_frame(&b, FrameLimits::new(1 << 20)).expect("decode")
            }
            _ => continue,
        }
    }
}

/// Reads until the peer's close frame and returns it (`None`: the socket ended without one,
/// or the close carried no code). Grid messages before it are skipped.
pub async fn close_frame(ws: &mut RawSocket) -> Option<grid::codec::Close> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Close(frame))) => {
                return frame.map(|f| grid::codec::Close::new(f.code.into(), f.reason.as_str()))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Decodes a ConnectResponse.
pub fn connect_response(m: &Message) -> ConnectResponse {
    assert_eq!(m.op, Op::ConnectResponse);
    handshake::decode(m.payload.as_deref().expect("payload")).expect("response")
}

/// Upgrades with the right token, sends a hand-made Connect and returns the answer.
pub async fn hello(url: &str, host: &str, clock_ms: i64) -> ConnectResponse {
    let mut ws = upgrade(url, Some(TOKEN)).await.expect("upgrade");
    ws.send(WsMessage::Binary(connect_message(host, clock_ms).into()))
        .await
        .expect("send");
    connect_response(&next_messages(&mut ws).await[0])
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A raw peer that completed the handshake as the dialer of the pair.
pub async fn handshaken(url: &str) -> RawSocket {
    handshaken_announcing(url, None, None).await
}

/// A handshaken raw peer, as the dialer of the pair, announcing `max_concurrent` and
/// `window` (absent: the defaults).
pub async fn handshaken_announcing(
    url: &str,
    max_concurrent: Option<u32>,
    window: Option<u64>,
) -> RawSocket {
    handshake_as(url, dialer_first().0, max_concurrent, window).await
}

/// Sends one grid message (with checksum) on a raw socket.
pub async fn send(ws: &mut RawSocket, m: &Message) {
    ws.send(WsMessage::Binary(m.encode(true).into()))
        .await
        .expect("send");
}

/// Reads until a grid message matching `pred` arrives, and returns it.
pub async fn wait_for(ws: &mut RawSocket, pred: impl Fn(&Message) -> bool) -> Message {
    loop {
        for m in next_messages(ws).await {
            if pred(&m) {
                return m;
            }
        }
    }
}

/// Several grid messages (with checksums) merged into the bytes of one frame.
pub fn merged_frame(messages: &[Message]) -> Vec<u8> {
    let mut inner = Vec::new();
    for m in messages {
        m.encode_into(&mut inner, true);
    }
    let mut merged = Message::new(Op::Merged);
    merged.payload = Some(Bytes::from(inner));
    merged.encode(false)
}

/// Sends several grid messages (with checksums) merged into one frame, without reading.
pub async fn send_merged(
    ws: &mut RawSocket,
    messages: &[Message],
) -> Result<(), tungstenite::Error> {
    ws.send(WsMessage::Binary(merged_frame(messages).into()))
        .await
}

/// A raw peer that only writes: WebSocket frames straight onto the socket, masked with a
/// zero key (so the payload goes out as is, without a copy), never reading anything.
pub struct Flooder {
    io: tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
}

impl Flooder {
    /// Takes over a handshaken raw peer's socket.
    pub fn new(ws: RawSocket) -> Self {
        Self {
            io: ws.into_inner(),
        }
    }

    /// Writes one binary WebSocket message carrying `frame` (a grid frame).
    pub async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut header = vec![0x82u8];
        let len = frame.len();
        if len < 126 {
            header.push(0x80 | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            header.push(0x80 | 126);
            header.extend_from_slice(&short.to_be_bytes());
        } else {
            header.push(0x80 | 127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
        header.extend_from_slice(&[0, 0, 0, 0]);
        self.io.write_all(&header).await?;
        self.io.write_all(frame).await
    }
}

/// A raw peer that completed the handshake as `host`, announcing `max_concurrent` and
/// `window` (absent: the defaults).
pub async fn handshake_as(
    url: &str,
    host: &str,
    max_concurrent: Option<u32>,
    window: Option<u64>,
) -> RawSocket {
    let mut ws = upgrade(url, Some(TOKEN)).await.expect("upgrade");
    let mut req = connect_request(host, now_ms());
    req.terms.max_concurrent = max_concurrent;
    req.terms.reassembly_window = window;
    let hello = encode_connect(req, true);
    ws.send(WsMessage::Binary(hello.into()))
        .await
        .expect("send");
    let answer = connect_response(&next_messages(&mut ws).await[0]);
    assert!(answer.accepted, "{}", answer.reason);
    ws
}
