//! Every socket ends with a WebSocket close frame that says why (PROTOCOL.md §1): a peer
//! that breaks the protocol is told what was wrong (1002, or 1008 past a limit), a refused
//! handshake says why (1008), a node shutting down says so (1001); and a close frame from
//! the peer that reports a violation reaches `last_error()` and the stats.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use grid::codec::handshake::{self, ConnectResponse};
use grid::codec::{decode_frame, Close, Flags, FrameLimits, HandlerId, Message, Op};
use grid::{Error, State};
use grid_tests::raw::{self, close_frame, now_ms, send, send_merged};
use grid_tests::{dialer_first, shut_down, wait_state, within};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The acceptor's connection to the raw dialer once it dropped it: its last error and
/// protocol error count.
async fn after_drop(m: &grid::Manager) -> (Option<Error>, u64) {
    let (d, _) = dialer_first();
    let conn = m.connection(d).expect("conn");
    wait_state(&conn, |s| s != State::Connected).await;
    (conn.last_error(), conn.stats().protocol_errors)
}

#[tokio::test]
async fn a_peer_that_breaks_the_protocol_is_told_why_with_1002() {
    within(async {
        let (m, url) = raw::acceptor().await;
        let mut ws = raw::handshaken(&url).await;
        // A handshake message on a live connection.
        send(&mut ws, &Message::new(Op::ConnectResponse)).await;
        let close = close_frame(&mut ws).await.expect("a close frame");
        assert_eq!(close.code, Close::PROTOCOL_ERROR);
        assert!(
            close.reason.contains("unexpected ConnectResponse"),
            "{close:?}"
        );
        let (last, counted) = after_drop(&m).await;
        match last {
            Some(Error::Protocol(why)) => assert_eq!(why, close.reason),
            other => panic!("expected the protocol error, got {other:?}"),
        }
        assert_eq!(counted, 1);
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_peer_past_a_limit_is_told_why_with_1008() {
    within(async {
        let (m, url) = raw::acceptor().await;
        let mut ws = raw::handshaken(&url).await;
        // More chunked payloads in progress at once than a node holds.
        let parts: Vec<Message> = (1..=65u64)
            .map(|mux| {
                let mut part = Message::new(Op::Request);
                part.mux_id = mux;
                part.handler = HandlerId::new(1);
                part.flags = Flags::MORE;
                part.payload = Some(Bytes::from_static(b"x"));
                part
            })
            .collect();
        send_merged(&mut ws, &parts).await.expect("send");
        let close = close_frame(&mut ws).await.expect("a close frame");
        assert_eq!(close.code, Close::POLICY);
        assert!(close.reason.contains("in progress"), "{close:?}");
        let (last, counted) = after_drop(&m).await;
        assert!(
            matches!(&last, Some(Error::Protocol(why)) if *why == close.reason),
            "{last:?}"
        );
        assert_eq!(counted, 1);
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_refused_handshake_ends_with_a_close_frame_saying_why() {
    within(async {
        let (m, url) = raw::acceptor().await;
        let mut ws = raw::upgrade(&url, Some(grid_tests::TOKEN))
            .await
            .expect("upgrade");
        let hello = raw::connect_message("mallory", now_ms());
        ws.send(WsMessage::Binary(hello.into()))
            .await
            .expect("send");
        let answer = raw::connect_response(&raw::next_messages(&mut ws).await[0]);
        assert!(!answer.accepted);
        let close = close_frame(&mut ws).await.expect("a close frame");
        assert_eq!(close.code, Close::POLICY);
        assert!(close.reason.contains("unknown host"), "{close:?}");
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_node_shutting_down_says_so() {
    within(async {
        let (m, url) = raw::acceptor().await;
        let mut ws = raw::handshaken(&url).await;
        let stopping = tokio::spawn({
            let m = m.clone();
            async move { m.shutdown().await }
        });
        let close = close_frame(&mut ws).await.expect("a close frame");
        assert_eq!(close.code, Close::GOING_AWAY);
        assert!(close.reason.contains("shutting down"), "{close:?}");
        stopping.await.expect("shutdown");
        shut_down(&m).await;
    })
    .await
}

/// A raw acceptor that passes the handshake, then closes with a protocol error: the grid
/// dialer's `last_error()` says what the peer said, and counts it.
#[tokio::test]
async fn a_close_frame_reporting_a_violation_reaches_last_error() {
    within(async {
        let (d, a) = dialer_first();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = grid_tests::url_of(listener.local_addr().expect("addr"));
        let node = grid_tests::builder(d).peer(a, url).build().expect("build");
        let conn = node.connection(a).expect("conn");
        let (tcp, _) = listener.accept().await.expect("the node dials");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let hello = loop {
            match ws.next().await.expect("a frame").expect("a good frame") {
                WsMessage::Binary(b) => break b,
                _ => continue,
            }
        };
        let hello = decode_frame(&hello, FrameLimits::new(1 << 20)).expect("decode");
        assert_eq!(hello[0].op, Op::Connect);
        let mut answer = Message::new(Op::ConnectResponse);
        answer.payload = Some(Bytes::from(handshake::encode(&ConnectResponse {
            accepted: true,
            host: a.into(),
            instance: grid::Uuid::new_v4().to_string(),
            clock_ms: now_ms(),
            terms: handshake::Terms {
                version: Some(handshake::PROTOCOL_VERSION),
                ..handshake::Terms::default()
            },
            ..ConnectResponse::default()
        })));
        ws.send(WsMessage::Binary(answer.encode(true).into()))
            .await
            .expect("send");
        wait_state(&conn, |s| s == State::Connected).await;
        ws.send(WsMessage::Close(Some(CloseFrame {
            code: CloseCode::Protocol,
            reason: "mux 9 reused while in flight".into(),
        })))
        .await
        .expect("close");
        wait_state(&conn, |s| s == State::ConnectionError).await;
        match conn.last_error() {
            Some(Error::Protocol(why)) => {
                assert!(why.contains("mux 9 reused while in flight"), "{why}");
            }
            other => panic!("expected the peer's reason, got {other:?}"),
        }
        assert_eq!(conn.stats().protocol_errors, 1);
        // The failure keeps its time: later, it is that much older.
        let (_, age) = conn.last_error_age().expect("a last error");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (again, older) = conn.last_error_age().expect("still there");
        assert_eq!(Some(again), conn.last_error());
        assert!(
            older >= age + Duration::from_millis(20),
            "{age:?} -> {older:?}"
        );
        shut_down(&node).await;
    })
    .await
}
