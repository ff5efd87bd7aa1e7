//! Streams over real loopback sockets: data both ways, errors, cancellation, deadlines,
//! congestion (credit), many streams at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{Error, HandlerId, RemoteError, StreamCall, StreamHandler};
use grid_tests::handlers::echo_back;
use grid_tests::{num, unnum, within, Cluster};
use tokio::sync::mpsc;

const ECHO: HandlerId = HandlerId::new(10);
const SOURCE: HandlerId = HandlerId::new(11);
const FAILING: HandlerId = HandlerId::new(12);

/// Echoes every input message back after the initial payload, then returns.
fn echo() -> StreamHandler {
    StreamHandler::new(|mut call: StreamCall| async move {
        call.output
            .send(call.payload.clone().unwrap_or_default())
            .await?;
        let mut input = call.take_input()?;
        echo_back(&mut input, &mut call.output).await
    })
    .with_input()
}

/// Sends as many numbered messages as the initial payload says, then returns.
fn source() -> StreamHandler {
    StreamHandler::new(|mut call: StreamCall| async move {
        let n = unnum(&call.payload.clone().unwrap_or_default());
        for i in 0..n {
            call.output.send(num(i)).await?;
        }
        Ok(())
    })
}

async fn pair() -> Cluster {
    let c = Cluster::start(&["alpha", "beta"], |b| b).await;
    for m in &c.managers {
        m.register_stream(ECHO, echo()).expect("register");
        m.register_stream(SOURCE, source()).expect("register");
        m.register_stream(
            FAILING,
            StreamHandler::new(|mut call: StreamCall| async move {
                for i in 0..3 {
                    call.output.send(num(i)).await?;
                }
                Err(RemoteError::new("disk on fire"))
            })
            .with_input(),
        )
        .expect("register");
    }
    c.connected().await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_with_initial_payload_and_a_thousand_messages_each_way() {
    within(async {
        let c = pair().await;
        // Both directions of the connection at once.
        let runs = [("alpha", "beta"), ("beta", "alpha")].map(|(from, to)| {
            let conn = c
                .managers
                .iter()
                .find(|m| m.local() == from)
                .expect("m")
                .connection(to)
                .expect("conn");
            async move {
                let stream = conn
                    .open_stream(ECHO, Bytes::from_static(b"hello"))
                    .await
                    .expect("open");
                let mut requests = stream.requests.expect("echo takes input");
                let mut responses = stream.responses;
                let writer = tokio::spawn(async move {
                    for i in 0..1000 {
                        requests.send(num(i)).await.expect("send");
                    }
                    requests.finish().await.expect("finish");
                });
                assert_eq!(
                    responses.next().await.expect("first").expect("ok"),
                    Bytes::from_static(b"hello")
                );
                for i in 0..1000 {
                    let got = responses.next().await.expect("item").expect("ok");
                    assert_eq!(unnum(&got), i, "out of order or lost");
                }
                assert!(
                    responses.next().await.is_none(),
                    "clean end after the handler returned"
                );
                writer.await.expect("writer");
            }
        });
        futures::future::join_all(runs).await;
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_handler_only_stream_has_no_request_sender() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(SOURCE, num(100)).await.expect("open");
        assert!(stream.requests.is_none());
        let got: Vec<u32> = stream
            .responses
            .map(|r| unnum(&r.expect("ok")))
            .collect()
            .await;
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn split_hands_out_both_ends_or_says_the_handler_takes_no_input() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(ECHO, num(7)).await.expect("open");
        let (mut requests, mut responses) = stream.split().expect("the echo takes input");
        requests.send(num(8)).await.expect("send");
        requests.finish().await.expect("finish");
        let got: Vec<u32> = (&mut responses)
            .map(|r| unnum(&r.expect("ok")))
            .collect()
            .await;
        assert_eq!(got, vec![7, 8]);
        let source = conn.open_stream(SOURCE, num(3)).await.expect("open");
        match source.split() {
            Err(Error::Protocol(why)) => assert!(why.contains("takes no input"), "{why}"),
            other => panic!("expected a clear error, got {other:?}"),
        }
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_handler_taking_input_it_has_not_tells_the_caller() {
    within(async {
        const NO_INPUT: HandlerId = HandlerId::new(13);
        let c = pair().await;
        c.managers[1]
            .register_stream(
                NO_INPUT,
                StreamHandler::new(|mut call: StreamCall| async move {
                    let _input = call.take_input()?;
                    Ok(())
                }),
            )
            .expect("register");
        let conn = c.managers[0].connection("beta").expect("conn");
        let mut stream = conn.open_stream(NO_INPUT, None).await.expect("open");
        match stream.responses.next().await {
            Some(Err(Error::Remote(e))) => assert!(e.message.contains("with_input"), "{e}"),
            other => panic!("expected the handler's error, got {other:?}"),
        }
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_handler_error_mid_stream_is_the_last_item_and_ends_the_requests_with_it() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(FAILING, None).await.expect("open");
        let mut requests = stream.requests.expect("takes input");
        let items: Vec<Result<Bytes, Error>> = stream.responses.collect().await;
        assert_eq!(items.len(), 4);
        for (i, item) in items[..3].iter().enumerate() {
            assert_eq!(unnum(item.as_ref().expect("ok")), i as u32);
        }
        match &items[3] {
            Err(Error::Remote(e)) => assert_eq!(e.message, "disk on fire"),
            other => panic!("expected the handler's error, got {other:?}"),
        }
        // The requests end with the handler's error: nothing was cancelled.
        assert_eq!(
            requests.send(num(1)).await,
            Err(Error::Remote(RemoteError::new("disk on fire")))
        );
        drop(requests);
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn unknown_stream_handler_is_refused_at_open() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        match conn.open_stream(HandlerId::new(777), None).await {
            Err(Error::UnknownHandler { handler, .. }) => assert_eq!(handler, HandlerId::new(777)),
            other => panic!("expected UnknownHandler, got {other:?}"),
        }
        // A single-call id is not a stream handler either.
        c.managers[1]
            .register_single(
                HandlerId::new(5),
                |_, p: Option<Bytes>| async move { Ok(p) },
            )
            .expect("register");
        assert!(matches!(
            conn.open_stream(HandlerId::new(5), None).await,
            Err(Error::UnknownHandler { .. })
        ));
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn dropping_the_responses_cancels_the_handler_and_its_input_never_looks_finished() {
    within(async {
        let c = pair().await;
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<Result<Bytes, Error>>();
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let cancelled = Arc::new(AtomicUsize::new(0));
        let count = cancelled.clone();
        c.managers[1]
            .register_stream(
                HandlerId::new(20),
                StreamHandler::new(move |mut call: StreamCall| {
                    let seen_tx = seen_tx.clone();
                    let started_tx = started_tx.clone();
                    let count = count.clone();
                    async move {
                        // An upload consumer running beside the handler, as real code does.
                        let mut input = call.take_input()?;
                        let ctx = call.ctx.clone();
                        tokio::spawn(async move {
                            while let Some(item) = input.recv().await {
                                let end = item.is_err();
                                let _ = seen_tx.send(item);
                                if end {
                                    return;
                                }
                            }
                            let _ = seen_tx.send(Ok(Bytes::from_static(b"CLEAN EOF")));
                        });
                        tokio::spawn(async move {
                            ctx.cancelled().await;
                            count.fetch_add(1, Ordering::SeqCst);
                        });
                        let _ = started_tx.send(());
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                })
                .with_input(),
            )
            .expect("register");
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn
            .open_stream(HandlerId::new(20), None)
            .await
            .expect("open");
        let mut requests = stream.requests.expect("input");
        requests.send(num(1)).await.expect("send");
        started.recv().await.expect("handler started");
        assert_eq!(unnum(&seen.recv().await.expect("first").expect("ok")), 1);
        drop(stream.responses);
        // The upload consumer sees a cancellation error, never a clean end.
        assert_eq!(seen.recv().await.expect("end"), Err(Error::Cancelled));
        assert_eq!(requests.send(num(2)).await, Err(Error::Cancelled));
        drop(requests);
        c.finish().await;
        assert_eq!(
            cancelled.load(Ordering::SeqCst),
            1,
            "the handler's context saw the cancellation"
        );
    })
    .await
}

#[tokio::test]
async fn a_deadline_expiring_mid_stream_ends_both_sides() {
    within(async {
        let c = pair().await;
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
        c.managers[1]
            .register_stream(
                HandlerId::new(21),
                StreamHandler::new(move |mut call: StreamCall| {
                    let dropped_tx = dropped_tx.clone();
                    async move {
                        struct OnDrop(mpsc::UnboundedSender<()>);
                        impl Drop for OnDrop {
                            fn drop(&mut self) {
                                let _ = self.0.send(());
                            }
                        }
                        let _guard = OnDrop(dropped_tx);
                        call.output.send(num(1)).await?;
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                }),
            )
            .expect("register");
        let conn = c.managers[0].connection("beta").expect("conn");
        let mut stream = conn
            .open_stream(HandlerId::new(21), None)
            .deadline(Duration::from_millis(300))
            .await
            .expect("open");
        assert_eq!(
            unnum(&stream.responses.next().await.expect("one").expect("ok")),
            1
        );
        assert_eq!(
            stream.responses.next().await,
            Some(Err(Error::DeadlineExceeded))
        );
        assert!(stream.responses.next().await.is_none());
        dropped.recv().await.expect("the handler was dropped");
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn streams_on_subroutes_and_explicit_cancel() {
    within(async {
        let c = pair().await;
        let (cancelled_tx, mut cancelled) = mpsc::unbounded_channel::<String>();
        c.managers[1]
            .register_stream_on(
                HandlerId::new(30),
                "disk-3",
                StreamHandler::new(move |mut call: StreamCall| {
                    let cancelled_tx = cancelled_tx.clone();
                    async move {
                        let name = call.ctx.subroute().unwrap_or("-").to_owned();
                        call.output.send(Bytes::from(name.clone())).await?;
                        let ctx = call.ctx.clone();
                        tokio::spawn(async move {
                            ctx.cancelled().await;
                            let _ = cancelled_tx.send(name);
                        });
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                }),
            )
            .expect("register");
        let conn = c.managers[0].connection("beta").expect("conn");
        assert!(matches!(
            conn.open_stream(HandlerId::new(30), None).await,
            Err(Error::UnknownHandler { subroute: None, .. })
        ));
        match conn
            .subroute("disk-4")
            .open_stream(HandlerId::new(30), None)
            .await
        {
            Err(Error::UnknownHandler {
                subroute: Some(s), ..
            }) => assert_eq!(s, "disk-4"),
            other => panic!("expected UnknownHandler on disk-4, got {other:?}"),
        }
        let mut stream = conn
            .subroute("disk-3")
            .open_stream(HandlerId::new(30), None)
            .await
            .expect("open");
        assert_eq!(
            stream.responses.next().await.expect("name").expect("ok"),
            Bytes::from("disk-3")
        );
        stream.responses.cancel();
        assert!(stream.responses.next().await.is_none());
        assert_eq!(cancelled.recv().await.as_deref(), Some("disk-3"));
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stream_messages_arrive_whole_and_in_order_among_small_ones() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(ECHO, None).await.expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        let sizes: Vec<usize> = (0..40)
            .map(|i| if i % 3 == 0 { 200_000 + i } else { 10 + i })
            .collect();
        let payloads: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Bytes::from(vec![i as u8; *n]))
            .collect();
        let sent = payloads.clone();
        let writer = tokio::spawn(async move {
            for p in sent {
                requests.send(p).await.expect("send");
            }
            requests.finish().await.expect("finish");
        });
        assert_eq!(
            responses.next().await.expect("initial").expect("ok"),
            Bytes::new()
        );
        for p in payloads {
            assert_eq!(responses.next().await.expect("item").expect("ok"), p);
        }
        assert!(responses.next().await.is_none());
        writer.await.expect("writer");
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_opening_payload_reaches_its_handler_whole_and_a_panic_there_fails_the_stream() {
    const PANICS: HandlerId = HandlerId::new(13);
    within(async {
        let c = pair().await;
        c.managers[1]
            .register_stream(
                PANICS,
                StreamHandler::new(|call: StreamCall| {
                    let len = call.payload.as_ref().map_or(0, Bytes::len);
                    // In the handler function itself, before any future: with a payload
                    // this large, it runs in the handler's task, where the payload is joined.
                    panic!("handler saw {len} bytes");
                    #[allow(unreachable_code)]
                    async move {
                        Ok(())
                    }
                }),
            )
            .expect("register");
        let conn = c.managers[0].connection("beta").expect("conn");
        // Four chunks and a half: joined in the handler's task, not on the reader.
        let big: Bytes = (0..290_000u32).map(|i| (i % 251) as u8).collect();
        let stream = conn.open_stream(ECHO, big.clone()).await.expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        assert_eq!(responses.next().await.expect("first").expect("ok"), big);
        requests.send(num(7)).await.expect("send");
        requests.finish().await.expect("finish");
        assert_eq!(
            unnum(&responses.next().await.expect("item").expect("ok")),
            7
        );
        assert!(responses.next().await.is_none());
        let mut failed = conn.open_stream(PANICS, big).await.expect("open").responses;
        match failed.next().await {
            Some(Err(Error::Remote(e))) => {
                assert!(e.message.contains("handler saw 290000 bytes"), "{e:?}")
            }
            other => panic!("expected the handler's panic, got {other:?}"),
        }
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn an_oversize_stream_message_fails_that_send_only() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b.max_message_size(100_000)).await;
        for m in &c.managers {
            m.register_stream(ECHO, echo()).expect("register");
        }
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn.open_stream(ECHO, None).await.expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        assert_eq!(
            responses.next().await.expect("initial").expect("ok"),
            Bytes::new()
        );
        let before = requests.credit();
        match requests.send(Bytes::from(vec![1u8; 100_001])).await {
            Err(Error::MessageTooLarge { size, limit }) => {
                assert_eq!((size, limit), (100_001, 100_000))
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        assert_eq!(
            requests.credit(),
            before,
            "the refused message kept its credit"
        );
        // The stream and the connection carry on; a message at the limit goes through.
        let fits = Bytes::from(vec![2u8; 100_000]);
        requests.send(fits.clone()).await.expect("send");
        assert_eq!(responses.next().await.expect("echo").expect("ok"), fits);
        requests.finish().await.expect("finish");
        assert!(responses.next().await.is_none());
        assert_eq!(conn.stats().reconnects, 0);
        c.finish().await;
    })
    .await
}
