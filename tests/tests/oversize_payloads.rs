//! A peer that sends payloads over the node's maximum message size (ignoring the size
//! agreed in the handshake): each fails its own call or stream, with the size and the
//! limit, and the connection carries on.

use bytes::Bytes;
use grid::codec::{ErrorKind, ErrorPayload, Flags, HandlerId, Message, Op};
use grid::State;
use grid_tests::handlers::echo_input;
use grid_tests::hostile::{Attacked, ECHO};
use grid_tests::raw::{send, wait_for, RawSocket};
use grid_tests::within;

const LIMIT: usize = 100_000;
const STREAM: HandlerId = HandlerId::new(0x51);

fn request(mux: u64, flags: Flags, payload: Bytes) -> Message {
    let mut m = Message::new(Op::Request);
    m.mux_id = mux;
    m.handler = ECHO;
    m.deadline_ms = 60_000;
    m.flags = flags;
    m.payload = Some(payload);
    m
}

/// The error payload of the next message on `mux` with `op`.
async fn failure(ws: &mut RawSocket, mux: u64, op: Op) -> ErrorPayload {
    let m = wait_for(ws, |m| m.mux_id == mux && m.op == op).await;
    assert!(m.flags.contains(Flags::PAYLOAD_IS_ERROR), "{m:?}");
    ErrorPayload::decode(m.payload.as_deref().expect("payload")).expect("an error payload")
}

fn too_large(size: usize) -> ErrorPayload {
    ErrorPayload::too_large(size as u64, LIMIT as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_calls_and_stream_messages_fail_alone_with_their_sizes() {
    within(async {
        let node = Attacked::start(|b| b.max_message_size(LIMIT)).await;
        node.node
            .register_stream(STREAM, echo_input())
            .expect("register");
        let friend = node.keep_calling();
        let mut ws = node.attacker().await;
        // One message over the limit.
        let big = Bytes::from(vec![1u8; 150_000]);
        send(&mut ws, &request(1, Flags::NONE, big)).await;
        assert_eq!(failure(&mut ws, 1, Op::Response).await, too_large(150_000));
        // A chunked one: four parts of 64 KiB, the node drops them as they come.
        let part = Bytes::from(vec![2u8; 64 << 10]);
        for i in 0..4 {
            let flags = if i < 3 { Flags::MORE } else { Flags::NONE };
            send(&mut ws, &request(2, flags, part.clone())).await;
        }
        assert_eq!(
            failure(&mut ws, 2, Op::Response).await,
            too_large(4 * (64 << 10))
        );
        // A stream's message over the limit fails that stream, and says why.
        let mut open = Message::new(Op::ConnectMux);
        open.mux_id = 3;
        open.handler = STREAM;
        open.deadline_ms = 60_000;
        send(&mut ws, &open).await;
        assert_eq!(wait_for(&mut ws, |m| m.mux_id == 3).await.op, Op::AckMux);
        let mut data = Message::new(Op::MuxClientMsg);
        data.mux_id = 3;
        data.seq = 1;
        data.payload = Some(Bytes::from(vec![3u8; 120_000]));
        send(&mut ws, &data).await;
        let why = failure(&mut ws, 3, Op::DisconnectClientMux).await;
        assert_eq!(why, too_large(120_000));
        assert_eq!(why.kind, ErrorKind::TooLarge);
        // The connection carries on: a call within the limit is answered.
        send(
            &mut ws,
            &request(4, Flags::NONE, Bytes::from_static(b"fits")),
        )
        .await;
        let answer = wait_for(&mut ws, |m| m.mux_id == 4).await;
        assert_eq!(answer.payload.as_deref(), Some(&b"fits"[..]));
        assert_eq!(node.attacker_conn().state(), State::Connected);
        friend.served(10).await;
        friend.stop();
        grid_tests::assert_idle(&node.node).await;
        drop(ws);
        node.finish().await;
    })
    .await
}
