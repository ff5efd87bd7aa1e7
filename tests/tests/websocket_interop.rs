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

#[tokio::test]
async fn the_handler_side_enforces_the_deadline_on_its_own() {
    within(async {
        let (m, url) = acceptor().await;
        let (dropped_tx, mut dropped) = tokio::sync::mpsc::unbounded_channel::<()>();
        m.register_single(ECHO, move |_, _| {
            let dropped_tx = dropped_tx.clone();
            async move {
                struct OnDrop(tokio::sync::mpsc::UnboundedSender<()>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        let _ = self.0.send(());
                    }
                }
                let _guard = OnDrop(dropped_tx);
                std::future::pending::<()>().await;
                Ok(Bytes::from_static(b"too late"))
            }
        })
        .expect("register");
        let (d, _) = dialer_first();
        let mut ws = upgrade(&url, Some(TOKEN)).await.expect("upgrade");
        ws.send(WsMessage::Binary(connect_message(d, now_ms()).into()))
            .await
            .expect("send");
        assert!(connect_response(&next_messages(&mut ws).await[0]).accepted);
        let conn = m.connection(d).expect("conn");
        wait_state(&conn, |s| s == State::Connected).await;

        // A caller that never cancels: the handler side drops the handler at the deadline.
        let mut req = Message::new(Op::Request);
        req.mux_id = 5;
        req.deadline_ms = 50;
        req.handler = ECHO;
        ws.send(WsMessage::Binary(req.encode(true).into()))
            .await
            .expect("request");
        dropped
            .recv()
            .await
            .expect("handler dropped at its deadline");
        grid_tests::assert_idle(&m).await;

        // Nothing was sent for the call: the next grid message after our ping is its pong.
        let mut ping = Message::new(Op::Ping);
        ping.payload = Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1]));
        ws.send(WsMessage::Binary(ping.encode(true).into()))
            .await
            .expect("ping");
        let next = loop {
            let msgs = next_messages(&mut ws).await;
            // The acceptor's own periodic pings may come first; they are not answers.
            if let Some(m) = msgs.into_iter().find(|m| m.op != Op::Ping) {
                break m;
            }
        };
        assert_eq!(next.op, Op::Pong, "unexpected {next:?}");
        shut_down(&m).await;
    })
    .await
}
