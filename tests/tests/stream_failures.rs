//! Streams when things go wrong: the socket dies mid-stream, a caller stops pinging, a
//! handler vanishes, a peer breaks the sequence.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::codec::{Flags, HandlerId, Message, Op};
use grid::{Error, State, StreamCall, StreamHandler};
use grid_tests::raw::{acceptor, handshaken, next_messages, send, wait_for};
use grid_tests::{builder, dialer_first, num, shut_down, wait_state, within, ProxiedPair};
use tokio::sync::mpsc;

/// A handler that reports when it is dropped, and otherwise serves `body`.
fn watched(dropped: mpsc::UnboundedSender<()>, input: bool) -> StreamHandler {
    let handler = StreamHandler::new(move |mut call: StreamCall| {
        let dropped = dropped.clone();
        async move {
            struct OnDrop(mpsc::UnboundedSender<()>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    let _ = self.0.send(());
                }
            }
            let _guard = OnDrop(dropped);
            // Echo the input (if any); otherwise send until blocked on credit.
            match call.input.take() {
                Some(mut input) => {
                    while let Some(m) = input.recv().await {
                        call.output.send(m?).await?;
                    }
                }
                None => {
                    for i in 0.. {
                        call.output.send(num(i)).await?;
                    }
                }
            }
            Ok(())
        }
    });
    if input {
        handler.with_input()
    } else {
        handler
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_killed_mid_stream_ends_both_sides_then_new_streams_work() {
    within(async {
        // Streams kept for the peer would resume (tests/tests/resume.rs): not kept here.
        let pair = ProxiedPair::start(|b| b.resume_grace(Duration::ZERO)).await;
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
        for m in [&pair.dialer, &pair.acceptor] {
            m.register_stream(HandlerId::new(1), watched(dropped_tx.clone(), false))
                .expect("register");
            m.register_stream(HandlerId::new(2), watched(dropped_tx.clone(), true))
                .expect("register");
        }
        pair.connected().await;
        let (d, a) = pair.connections();
        // One stream each way, both handlers blocked on credit (nobody reads).
        let mut s1 = d.open_stream(HandlerId::new(1), None).await.expect("open");
        let mut s2 = a.open_stream(HandlerId::new(1), None).await.expect("open");
        // And one caller blocked on credit towards a handler that echoes.
        let s3 = d.open_stream(HandlerId::new(2), None).await.expect("open");
        let mut requests = s3.requests.expect("input");
        let blocked_sender = tokio::spawn(async move {
            loop {
                if let Err(e) = requests.send(num(1)).await {
                    return e;
                }
            }
        });
        // All three handlers run before the cut (an open still on its way would start no
        // handler, and there would be none to drop): each has answered once.
        assert_eq!(
            s1.responses.next().await.expect("first").expect("ok"),
            num(0)
        );
        assert_eq!(
            s2.responses.next().await.expect("first").expect("ok"),
            num(0)
        );
        let mut s3r = s3.responses;
        assert_eq!(s3r.next().await.expect("first echo").expect("ok"), num(1));

        pair.proxy.cut();
        // Every end fails promptly with Disconnected; nothing waits on the dead socket.
        assert_eq!(blocked_sender.await.expect("task"), grid_tests::LOST);
        for responses in [&mut s1.responses, &mut s2.responses] {
            loop {
                match responses.next().await.expect("an end, not silence") {
                    Ok(_) => continue, // messages that arrived before the cut
                    Err(e) => break assert_eq!(e, grid_tests::LOST),
                }
            }
        }
        loop {
            match s3r.next().await.expect("an end") {
                Ok(_) => continue,
                Err(e) => break assert_eq!(e, grid_tests::LOST),
            }
        }
        for _ in 0..3 {
            dropped.recv().await.expect("every handler was dropped");
        }
        grid_tests::assert_idle(&pair.dialer).await;
        grid_tests::assert_idle(&pair.acceptor).await;

        // After the reconnect, new streams work.
        let mut watch = d.watch_state();
        within(watch.wait_for(|_| d.stats().reconnects >= 1 && d.state() == State::Connected))
            .await
            .expect("reconnected");
        pair.connected().await;
        let s = d
            .open_stream(HandlerId::new(2), None)
            .await
            .expect("open after reconnect");
        let mut requests = s.requests.expect("input");
        requests.send(num(9)).await.expect("send");
        requests.finish().await.expect("finish");
        let got: Vec<Result<Bytes, Error>> = s.responses.collect().await;
        assert_eq!(got, vec![Ok(num(9))]);
        drop((s1, s2));
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_caller_that_stops_pinging_has_its_stream_cancelled() {
    within(async {
        let (d, a) = dialer_first();
        let (l, url) = grid_tests::listener().await;
        let m = builder(a)
            .peer(d, "ws://127.0.0.1:1/grid/v1")
            .stream_ping_interval(Duration::from_millis(30))
            .ping_interval(Duration::from_millis(50))
            .build()
            .expect("build");
        tokio::spawn(m.clone().serve(l));
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
        m.register_stream(HandlerId::new(1), watched(dropped_tx, false))
            .expect("register");
        let mut ws = handshaken(&url).await;
        let mut open = Message::new(Op::ConnectMux);
        open.mux_id = 7;
        open.handler = HandlerId::new(1);
        open.deadline_ms = 60_000;
        send(&mut ws, &open).await;
        let ack = wait_for(&mut ws, |m| m.mux_id == 7).await;
        assert_eq!(ack.op, Op::AckMux);
        // This raw caller keeps the connection alive (it pings, and answers the node's
        // pings at once) but never pings the stream: the handler side cancels it.
        let mut alive = Message::new(Op::Ping);
        alive.payload = Some(Bytes::from_static(&[0; 8]));
        let gone = 'heard: loop {
            send(&mut ws, &alive).await;
            let heard =
                tokio::time::timeout(Duration::from_millis(10), next_messages(&mut ws)).await;
            for m in heard.unwrap_or_default() {
                if m.mux_id == 7 && m.op == Op::DisconnectClientMux {
                    break 'heard m;
                }
                if m.mux_id == 0 && m.op == Op::Ping {
                    let mut pong = Message::new(Op::Pong);
                    pong.payload = m.payload;
                    send(&mut ws, &pong).await;
                }
            }
        };
        assert!(gone.flags.contains(Flags::PAYLOAD_IS_ERROR));
        dropped.recv().await.expect("the handler was dropped");
        grid_tests::assert_idle(&m).await;
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_caller_learns_when_its_handler_vanished() {
    within(async {
        let (d, _) = dialer_first();
        let (l, url) = grid_tests::listener().await;
        let m = builder(dialer_first().1)
            .peer(d, "ws://127.0.0.1:1/grid/v1")
            .stream_ping_interval(Duration::from_millis(30))
            .build()
            .expect("build");
        tokio::spawn(m.clone().serve(l));
        let mut ws = handshaken(&url).await;
        let conn = m.connection(d).expect("conn");
        wait_state(&conn, |s| s == State::Connected).await;
        // The grid side opens a stream to the raw peer, which accepts it and then forgets it.
        let opening = tokio::spawn(conn.open_stream(HandlerId::new(3), None).into_future());
        let open = wait_for(&mut ws, |m| m.op == Op::ConnectMux).await;
        let mut ack = Message::new(Op::AckMux);
        ack.mux_id = open.mux_id;
        ack.payload = Some(Bytes::from_static(&[0x92, 0, 4]));
        send(&mut ws, &ack).await;
        let mut stream = opening.await.expect("task").expect("opened");
        // The caller pings its stream; the raw peer answers that it does not know it.
        let ping = wait_for(&mut ws, |m| m.op == Op::Ping && m.mux_id == open.mux_id).await;
        let mut unknown = Message::new(Op::DisconnectClientMux);
        unknown.mux_id = ping.mux_id;
        send(&mut ws, &unknown).await;
        assert_eq!(stream.responses.next().await, Some(Err(Error::Cancelled)));
        grid_tests::assert_idle(&m).await;
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_sequence_gap_fails_that_stream_only() {
    within(async {
        let (m, url) = acceptor().await;
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
        m.register_stream(HandlerId::new(2), watched(dropped_tx, true))
            .expect("register");
        let mut ws = handshaken(&url).await;
        for mux in [1u64, 2] {
            let mut open = Message::new(Op::ConnectMux);
            open.mux_id = mux;
            open.handler = HandlerId::new(2);
            open.deadline_ms = 60_000;
            // The window granted for the handler's messages (PROTOCOL.md §6).
            open.seq = 64 * 1024;
            send(&mut ws, &open).await;
            assert_eq!(wait_for(&mut ws, |m| m.mux_id == mux).await.op, Op::AckMux);
        }
        let data = |mux: u64, seq: u32, v: u32| {
            let mut m = Message::new(Op::MuxClientMsg);
            m.mux_id = mux;
            m.seq = seq;
            m.payload = Some(num(v));
            m
        };
        send(&mut ws, &data(1, 1, 10)).await;
        send(&mut ws, &data(2, 1, 20)).await;
        send(&mut ws, &data(1, 3, 11)).await; // message 2 of stream 1 is missing
        let gone = wait_for(&mut ws, |m| {
            m.mux_id == 1 && m.op == Op::DisconnectClientMux
        })
        .await;
        assert_eq!(gone.mux_id, 1);
        // It says why.
        assert!(gone.flags.contains(Flags::PAYLOAD_IS_ERROR), "{gone:?}");
        let why = grid::codec::ErrorPayload::decode(gone.payload.as_deref().expect("payload"))
            .expect("an error payload");
        assert_eq!(why.kind, grid::codec::ErrorKind::Protocol);
        assert!(
            why.message.contains("3 arrived where 2 was expected"),
            "{}",
            why.message
        );
        dropped
            .recv()
            .await
            .expect("stream 1's handler was dropped");
        // Stream 2 carries on.
        send(&mut ws, &data(2, 2, 21)).await;
        let echoed = wait_for(&mut ws, |m| {
            m.mux_id == 2 && m.op == Op::MuxServerMsg && m.payload == Some(num(21))
        })
        .await;
        assert_eq!(echoed.seq, 2);
        let mut eof = Message::new(Op::MuxClientMsg);
        eof.mux_id = 2;
        eof.seq = 3;
        eof.flags = Flags::EOF;
        send(&mut ws, &eof).await;
        let end = wait_for(&mut ws, |m| m.mux_id == 2 && m.flags.contains(Flags::EOF)).await;
        assert!(!end.flags.contains(Flags::PAYLOAD_IS_ERROR));
        grid_tests::assert_idle(&m).await;
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn the_handler_side_enforces_a_streams_deadline_on_its_own() {
    within(async {
        let (m, url) = acceptor().await;
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
        m.register_stream(HandlerId::new(1), watched(dropped_tx, false))
            .expect("register");
        let mut ws = handshaken(&url).await;
        // A raw caller that never cancels and never reads: only the handler side's own
        // deadline can end this stream.
        let mut open = Message::new(Op::ConnectMux);
        open.mux_id = 3;
        open.handler = HandlerId::new(1);
        open.deadline_ms = 100;
        send(&mut ws, &open).await;
        let end = wait_for(&mut ws, |m| m.mux_id == 3 && m.flags.contains(Flags::EOF)).await;
        assert!(end.flags.contains(Flags::PAYLOAD_IS_ERROR));
        let failure = grid::codec::ErrorPayload::decode(end.payload.as_deref().expect("error"))
            .expect("decode");
        assert_eq!(failure.kind, grid::codec::ErrorKind::DeadlineExceeded);
        dropped.recv().await.expect("the handler was dropped");
        grid_tests::assert_idle(&m).await;
        shut_down(&m).await;
    })
    .await
}
