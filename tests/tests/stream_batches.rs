//! Batched sends over real sockets: `send_all` on the byte-level and the typed sender, in
//! order through a window much smaller than the batch, and what a batch does when one of
//! its messages cannot go; and a single `send` dropped at its one yield point.

use bytes::Bytes;
use futures::StreamExt;
use grid::{Error, HandlerId, Receiver, RemoteError, Sender, StreamCall, StreamHandler};
use grid_tests::handlers::echo_input;
use grid_tests::{num, unnum, within, Cluster};
use serde::{Deserialize, Serialize, Serializer};

const ECHO: HandlerId = HandlerId::new(10);

async fn pair(max_message: usize) -> Cluster {
    let c = Cluster::start(&["alpha", "beta"], |b| b.max_message_size(max_message)).await;
    for m in &c.managers {
        m.register_stream(ECHO, echo_input()).expect("register");
    }
    c.connected().await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_all_delivers_every_message_in_order_through_a_small_window() {
    within(async {
        let c = pair(1 << 20).await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(ECHO, None).await.expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        const N: u32 = 5_000;
        // The window is 16 each way: the batch waits for credit hundreds of times.
        let send = async move {
            requests.send_all((0..N).map(num)).await.expect("send_all");
            requests.finish().await.expect("finish");
        };
        let receive = async move {
            let mut next = 0;
            while let Some(m) = responses.next().await {
                assert_eq!(unnum(&m.expect("message")), next, "in order, none lost");
                next += 1;
            }
            next
        };
        let ((), received) = tokio::join!(send, receive);
        assert_eq!(received, N);
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn send_all_stops_at_an_oversize_message_and_the_stream_carries_on() {
    within(async {
        let c = pair(1_000).await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(ECHO, None).await.expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        let batch = [num(1), num(2), Bytes::from(vec![0; 1_001]), num(3)];
        match requests.send_all(batch).await {
            Err(Error::MessageTooLarge { size, limit }) => {
                assert_eq!((size, limit), (1_001, 1_000))
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        requests.send(num(4)).await.expect("the stream carries on");
        requests.finish().await.expect("finish");
        let mut got = Vec::new();
        while let Some(m) = responses.next().await {
            got.push(unnum(&m.expect("message")));
        }
        assert_eq!(
            got,
            [1, 2, 4],
            "before the oversize one, then what followed the error"
        );
        c.finish().await;
    })
    .await
}

/// An item that cannot be encoded when it is 13.
#[derive(Debug, PartialEq, Deserialize)]
struct Item(u32);

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is not sent"));
        }
        s.serialize_newtype_struct("Item", &self.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_send_all_sends_by_value_or_reference_and_stops_at_an_item_it_cannot_encode() {
    within(async {
        let c = pair(1 << 20).await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(ECHO, None).await.expect("open");
        let mut requests: Sender<Item> = Sender::new(stream.requests.expect("input"));
        let mut responses: Receiver<Item> = Receiver::new(stream.responses);
        let by_ref: Vec<Item> = (0..5).map(Item).collect();
        requests.send_all(&by_ref).await.expect("by reference");
        match requests.send_all((5..40).map(Item)).await {
            Err(Error::Codec(why)) => assert!(why.contains("13 is not sent"), "{why}"),
            other => panic!("expected a codec error, got {other:?}"),
        }
        requests
            .send(&Item(99))
            .await
            .expect("the stream carries on");
        requests.finish().await.expect("finish");
        let mut got = Vec::new();
        while let Some(item) = responses.next().await {
            got.push(item.expect("item").0);
        }
        let expected: Vec<u32> = (0..13).chain([99]).collect();
        assert_eq!(got, expected);
        c.finish().await;
    })
    .await
}

/// A handler's own typed output stages its items in place (no buffer per item); a batch
/// stops at an item it cannot encode, having sent those before it, and nothing of the bad
/// one reaches the wire: the stream carries on with the next send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_typed_send_all_stages_its_items_and_stops_at_one_it_cannot_encode() {
    within(async {
        const PUSH: HandlerId = HandlerId::new(12);
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register_stream(
                PUSH,
                StreamHandler::new(|call: StreamCall| async move {
                    let mut out: Sender<Item> = Sender::new(call.output);
                    let by_ref: Vec<Item> = (0..5).map(Item).collect();
                    out.send_all(&by_ref).await?;
                    match out.send_all((5..40).map(Item)).await {
                        Err(Error::Codec(why)) if why.contains("13 is not sent") => {}
                        other => return Err(RemoteError::new(format!("got {other:?}"))),
                    }
                    out.send(&Item(99)).await?;
                    Ok(())
                }),
            )
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(PUSH, None).await.expect("open");
        let mut responses: Receiver<Item> = Receiver::new(stream.responses);
        let mut got = Vec::new();
        while let Some(item) = responses.next().await {
            got.push(item.expect("item").0);
        }
        let expected: Vec<u32> = (0..13).chain([99]).collect();
        assert_eq!(got, expected);
        c.finish().await;
    })
    .await
}

/// A `send` may yield before its message (when the one before filled a frame for the
/// writer); dropped there, it has sent nothing, as its `Cancel safety` section says.
#[tokio::test]
async fn a_send_dropped_while_it_lets_the_writer_go_first_sends_nothing() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        const WIDE: HandlerId = HandlerId::new(11);
        for m in &c.managers {
            m.register_stream(WIDE, echo_input()).expect("register");
        }
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(WIDE, None).await.expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        // On this single-threaded runtime nothing else runs while the sends complete at
        // once (credit for all of them): only a step aside can leave one pending.
        let mut dropped = Vec::new();
        for i in 0..3_000u32 {
            let mut send = Box::pin(requests.send(num(i)));
            match futures::poll!(&mut send) {
                std::task::Poll::Ready(r) => r.expect("sent"),
                std::task::Poll::Pending => dropped.push(i),
            }
        }
        assert!(
            !dropped.is_empty(),
            "some send stepped aside for the writer"
        );
        requests.finish().await.expect("finish");
        let mut got = Vec::new();
        while let Some(m) = responses.next().await {
            got.push(unnum(&m.expect("message")));
        }
        let expected: Vec<u32> = (0..3_000).filter(|i| !dropped.contains(i)).collect();
        assert_eq!(
            got, expected,
            "every other message, in order; none of the dropped"
        );
        c.finish().await;
    })
    .await
}
