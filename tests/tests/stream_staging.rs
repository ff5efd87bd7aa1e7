//! A stream handler's output queues its small messages in batches (staged in the handler's
//! task, queued when its poll returns at the latest), over real sockets: nothing waits for
//! a later message to go out, order holds across staged, large and moved senders, and a
//! panicking handler's last messages still arrive before its error.

use bytes::Bytes;
use futures::StreamExt;
use grid::{Error, HandlerId, RemoteError, StreamCall, StreamHandler};
use grid_tests::{num, unnum, within, Cluster};

/// Sends a message, then waits for the caller to send it back, `n` times.
const PING_PONG: HandlerId = HandlerId::new(20);
/// Sends small and large messages mixed, in a known order.
const MIXED: HandlerId = HandlerId::new(21);
/// Sends half its messages, then hands its sender to another task for the rest.
const HANDS_OVER: HandlerId = HandlerId::new(22);
/// Sends a few messages, then panics in the same poll.
const PANICS: HandlerId = HandlerId::new(23);
/// Sends [`MIXED`]'s messages with `send_all`, in batches of 50.
const MIXED_ALL: HandlerId = HandlerId::new(24);

const ROUNDS: u32 = 300;
const HANDED: u32 = 20_000;

/// The `i`th message of [`MIXED`]: mostly small (empty ones too), every 50th beyond what is
/// staged (sent whole, in chunks).
fn mixed(i: u32) -> Bytes {
    let len = match i % 50 {
        0 => 200_000 + i as usize,
        7 => 0,
        n => n as usize * 13,
    };
    let mut b = vec![(i % 251) as u8; len];
    if len >= 4 {
        b[..4].copy_from_slice(&i.to_le_bytes());
    }
    Bytes::from(b)
}

fn handlers() -> [(HandlerId, StreamHandler); 5] {
    [
        (
            PING_PONG,
            StreamHandler::new(|mut call: StreamCall| async move {
                let mut input = call.take_input()?;
                for i in 0..ROUNDS {
                    call.output.send(num(i)).await?;
                    // Nothing more is sent until the caller answers: the message must go
                    // out when this poll returns, not with a next one.
                    let back = input
                        .next()
                        .await
                        .ok_or(RemoteError::new("input ended"))??;
                    if unnum(&back) != i {
                        return Err(RemoteError::new("answer out of order"));
                    }
                }
                Ok(())
            })
            .with_input(),
        ),
        (
            MIXED,
            StreamHandler::new(|mut call: StreamCall| async move {
                for i in 0..500 {
                    call.output.send(mixed(i)).await?;
                }
                Ok(())
            }),
        ),
        (
            HANDS_OVER,
            StreamHandler::new(|mut call: StreamCall| async move {
                for i in 0..HANDED / 2 {
                    call.output.send(num(i)).await?;
                }
                // Moved while messages are still staged in this task, to a thread that
                // sends at once, while this one is busy for a while without yielding
                // (blocking on purpose): it must not overtake them.
                let mut output = call.output;
                let runtime = tokio::runtime::Handle::current();
                let rest = tokio::task::spawn_blocking(move || {
                    runtime.block_on(async move {
                        for i in HANDED / 2..HANDED {
                            output.send(num(i)).await?;
                        }
                        output.finish().await
                    })
                });
                std::thread::sleep(std::time::Duration::from_millis(3));
                rest.await
                    .map_err(|e| RemoteError::new(e.to_string()))?
                    .map_err(|e| RemoteError::new(e.to_string()))
            }),
        ),
        (
            MIXED_ALL,
            StreamHandler::new(|mut call: StreamCall| async move {
                for batch in 0..10 {
                    call.output
                        .send_all((batch * 50..batch * 50 + 50).map(mixed))
                        .await?;
                }
                Ok(())
            }),
        ),
        (
            PANICS,
            StreamHandler::new(|mut call: StreamCall| async move {
                for i in 0..10 {
                    call.output.send(num(i)).await?;
                }
                panic!("after ten messages");
            }),
        ),
    ]
}

async fn pair() -> Cluster {
    let c = Cluster::start(&["alpha", "beta"], |b| b).await;
    for (id, h) in handlers() {
        c.managers[1].register_stream(id, h).expect("register");
    }
    c.connected().await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_waits_for_its_caller_after_each_message_is_never_stuck() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn
            .open_stream(PING_PONG, Bytes::new())
            .await
            .expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        for i in 0..ROUNDS {
            let m = responses.next().await.expect("a message").expect("ok");
            assert_eq!(unnum(&m), i);
            requests.send(m).await.expect("answer");
        }
        requests.finish().await.expect("finish");
        assert!(responses.next().await.is_none(), "a clean end");
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_empty_and_large_messages_from_a_handler_arrive_whole_and_in_order_sent_or_sent_all()
{
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        for handler in [MIXED, MIXED_ALL, MIXED] {
            let mut responses = conn
                .open_stream(handler, Bytes::new())
                .await
                .expect("open")
                .responses;
            for i in 0..500 {
                let m = responses.next().await.expect("a message").expect("ok");
                assert!(m == mixed(i), "message {i}: {} bytes", m.len());
            }
            assert!(responses.next().await.is_none());
        }
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_sender_handed_to_another_task_keeps_the_order() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        for _ in 0..5 {
            let mut responses = conn
                .open_stream(HANDS_OVER, Bytes::new())
                .await
                .expect("open")
                .responses;
            for i in 0..HANDED {
                let m = responses.next().await.expect("a message").expect("ok");
                assert_eq!(unnum(&m), i);
            }
            assert!(responses.next().await.is_none());
        }
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_after_sending_delivers_its_messages_then_its_error() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let mut responses = conn
            .open_stream(PANICS, Bytes::new())
            .await
            .expect("open")
            .responses;
        for i in 0..10 {
            let m = responses.next().await.expect("a message").expect("ok");
            assert_eq!(unnum(&m), i);
        }
        match responses.next().await {
            Some(Err(Error::Remote(e))) => assert!(e.message.contains("after ten"), "{e:?}"),
            other => panic!("expected the panic, got {other:?}"),
        }
        c.finish().await;
    })
    .await
}
