//! What a peer written from PROTOCOL.md alone ran into, each case decided (PROTOCOL.md §1,
//! §2, §5) and checked here over a real socket: the node closes with 1002 and says what
//! was wrong, instead of hanging, dropping a payload in silence, or answering twice.

use bytes::Bytes;
use grid::codec::{Close, Flags, HandlerId, Message, Op};
use grid_tests::raw::{self, close_frame, send_merged, RawSocket};
use grid_tests::{shut_down, within};
use tokio::io::AsyncWriteExt;

const SLOW: HandlerId = HandlerId::new(9);

fn message(op: Op, mux: u64, flags: Flags, payload: &'static [u8]) -> Message {
    let mut m = Message::new(op);
    m.mux_id = mux;
    m.handler = SLOW;
    m.deadline_ms = 60_000;
    m.flags = flags;
    m.payload = Some(Bytes::from_static(payload));
    m
}

/// Sends `messages` in one frame to a fresh acceptor, and returns its close frame.
async fn close_after(messages: &[Message]) -> Close {
    let (m, url) = raw::acceptor().await;
    m.register_single(SLOW, |_, p: Option<Bytes>| async move {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        Ok(p)
    })
    .expect("register");
    let mut ws = raw::handshaken(&url).await;
    send_merged(&mut ws, messages).await.expect("send");
    let close = close_frame(&mut ws).await.expect("a close frame");
    shut_down(&m).await;
    close
}

fn assert_protocol_error(close: &Close, says: &str) {
    assert_eq!(close.code, Close::PROTOCOL_ERROR, "{close}");
    assert!(close.reason.contains(says), "{close}");
}

#[tokio::test]
async fn a_stream_open_inside_a_chunked_request_of_the_same_mux_is_a_protocol_error() {
    within(async {
        // Part of a Request, then part of a ConnectMux on the same mux: the call used to hang.
        let close = close_after(&[
            message(Op::Request, 5, Flags::MORE, b"ab"),
            message(Op::ConnectMux, 5, Flags::MORE, b"cd"),
        ])
        .await;
        assert_protocol_error(
            &close,
            "ConnectMux on mux 5 arrived inside a chunked Request",
        );
        // Part of a Request, then a whole ConnectMux: the partial request used to be
        // dropped in silence.
        let close = close_after(&[
            message(Op::Request, 6, Flags::MORE, b"ab"),
            message(Op::ConnectMux, 6, Flags::NONE, b"cd"),
        ])
        .await;
        assert_protocol_error(
            &close,
            "ConnectMux on mux 6 arrived inside a chunked Request",
        );
    })
    .await
}

#[tokio::test]
async fn a_request_reusing_the_mux_id_of_one_in_flight_is_a_protocol_error() {
    within(async {
        let close = close_after(&[
            message(Op::Request, 7, Flags::NONE, b"first"),
            message(Op::Request, 7, Flags::NONE, b"second"),
        ])
        .await;
        assert_protocol_error(&close, "mux id 7 reused while in flight");
    })
    .await
}

#[tokio::test]
async fn a_connection_ping_over_125_bytes_is_a_protocol_error() {
    within(async {
        let mut ping = Message::new(Op::Ping);
        ping.payload = Some(Bytes::from(vec![1u8; 126]));
        let close = close_after(&[ping]).await;
        assert_protocol_error(&close, "connection ping with 126 bytes");
    })
    .await
}

/// Writes one WebSocket frame by hand (masked with a zero key, as a dialer must).
async fn raw_frame(ws: &mut RawSocket, first_byte: u8, payload: &[u8]) {
    let io = ws.get_mut();
    let mut frame = vec![first_byte];
    match u16::try_from(payload.len()) {
        Ok(n) if n < 126 => frame.push(0x80 | n as u8),
        _ => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    io.write_all(&frame).await.expect("write");
}

#[tokio::test]
async fn a_websocket_ping_over_125_bytes_is_a_protocol_error() {
    within(async {
        let (m, url) = raw::acceptor().await;
        let mut ws = raw::handshaken(&url).await;
        raw_frame(&mut ws, 0x89, &[0u8; 126]).await;
        let close = close_frame(&mut ws).await.expect("a close frame");
        assert_protocol_error(&close, "control frame");
        shut_down(&m).await;
    })
    .await
}
