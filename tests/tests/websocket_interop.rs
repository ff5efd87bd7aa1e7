//! grid's own WebSocket framing against a standard client (tokio-tungstenite): fragmented
//! messages, WebSocket pings, text frames, and a whole call made by hand.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use grid::codec::{Flags, HandlerId, Message, Op};
use grid::State;
use grid_tests::raw::{
    acceptor, connect_message, connect_response, next_messages, now_ms, upgrade,
};
use grid_tests::{dialer_first, shut_down, wait_state, within, TOKEN};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const ECHO: HandlerId = HandlerId::new(1);

#[tokio::test]
async fn a_standard_client_can_handshake_in_fragments_ping_and_call() {
    within(async {
        let (m, url) = acceptor().await;
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        let (d, _) = dialer_first();
        let mut ws = upgrade(&url, Some(TOKEN)).await.expect("upgrade");

        // The Connect message in three fragments.
        let hello = connect_message(d, now_ms());
        let (a, rest) = hello.split_at(5);
        let (b, c) = rest.split_at(7);
        ws.send(WsMessage::Frame(Frame::message(
            a.to_vec(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await
        .expect("send");
        ws.send(WsMessage::Frame(Frame::message(
            b.to_vec(),
            OpCode::Data(Data::Continue),
            false,
        )))
        .await
        .expect("send");
        ws.send(WsMessage::Frame(Frame::message(
            c.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .expect("send");
        let answer = connect_response(&next_messages(&mut ws).await[0]);
        assert!(answer.accepted, "{}", answer.reason);
        let conn = m.connection(d).expect("conn");
        wait_state(&conn, |s| s == State::Connected).await;

        // A WebSocket-level ping is answered with a pong carrying the same bytes.
        ws.send(WsMessage::Ping(Bytes::from_static(b"are you there")))
            .await
            .expect("ping");
        let pong = loop {
            match ws.next().await.expect("frame").expect("good frame") {
                WsMessage::Pong(p) => break p,
                _ => continue,
            }
        };
        assert_eq!(&pong[..], b"are you there");

        // A call made by hand: request, then the response with the same mux id.
        let mut req = Message::new(Op::Request);
        req.mux_id = 42;
        req.deadline_ms = 5_000;
        req.handler = ECHO;
        req.payload = Some(Bytes::from_static(b"by hand"));
        ws.send(WsMessage::Binary(req.encode(true).into()))
            .await
            .expect("request");
        let resp = loop {
            let found = next_messages(&mut ws)
                .await
                .into_iter()
                .find(|m| m.op == Op::Response);
            if let Some(r) = found {
                break r;
            }
        };
        assert_eq!(resp.mux_id, 42);
        assert!(!resp.flags.contains(Flags::PAYLOAD_IS_ERROR));
        assert_eq!(resp.payload, Some(Bytes::from_static(b"by hand")));

        // A text frame is a protocol violation: the acceptor drops the socket.
        ws.send(WsMessage::Text("hello".into()))
            .await
            .expect("text");
        wait_state(&conn, |s| s != State::Connected).await;
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_message_without_the_required_checksum_drops_the_socket() {
    within(async {
        let (m, url) = acceptor().await;
        let (d, _) = dialer_first();
        let mut ws = upgrade(&url, Some(TOKEN)).await.expect("upgrade");
        ws.send(WsMessage::Binary(connect_message(d, now_ms()).into()))
            .await
            .expect("send");
        assert!(connect_response(&next_messages(&mut ws).await[0]).accepted);
        let conn = m.connection(d).expect("conn");
        wait_state(&conn, |s| s == State::Connected).await;
        let mut req = Message::new(Op::Request);
        req.mux_id = 1;
        req.handler = ECHO;
        ws.send(WsMessage::Binary(req.encode(false).into()))
            .await
            .expect("request");
        wait_state(&conn, |s| s != State::Connected).await;
        assert_eq!(conn.stats().in_flight_handlers, 0);
        shut_down(&m).await;
    })
    .await
}
