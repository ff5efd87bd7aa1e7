//! Credit flow control under congestion: a slow reader on either side holds the sender at
//! the window it granted (bytes: a message costs its payload and 64 bytes), nothing is lost
//! or reordered, and nothing deadlocks. (A reader that stalls for many ping intervals is
//! stepped on a virtual clock: `engine::tests::streams::a_reader_that_stalls_for_many_ping_intervals_keeps_its_stream_and_its_connection`.)

use std::time::Duration;

use futures::StreamExt;
use grid::{HandlerId, StreamCall, StreamHandler};
use grid_tests::{num, unnum, within, Cluster};
use tokio::sync::{mpsc, oneshot};

/// What one numbered message (4 bytes) costs against a window.
const COST: u64 = 4 + 64;
/// The caller's window for the handler's messages: exactly eight of them.
const OUT_CAP: u32 = 8;
const OUT_WINDOW: u64 = OUT_CAP as u64 * COST;
/// The handler's window for the caller's messages: exactly four.
const IN_CAP: u32 = 4;
const IN_WINDOW: u64 = IN_CAP as u64 * COST;

/// No report arrives within a short window. (Used only to check that something is
/// blocked: a slow machine can only make this pass, never fail, when the code is right.)
async fn stays_quiet<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>) {
    if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        panic!("expected the sender to be blocked, but it reported {v:?}");
    }
}

#[tokio::test]
async fn a_caller_that_stops_reading_holds_the_handler_at_its_window() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        let (sent_tx, mut sent) = mpsc::unbounded_channel::<(u32, usize)>();
        c.managers[1]
            .register_stream(
                HandlerId::new(1),
                StreamHandler::new(move |mut call: StreamCall| {
                    let sent_tx = sent_tx.clone();
                    async move {
                        for i in 0..100 {
                            call.output.send(num(i)).await?;
                            let _ = sent_tx.send((i, call.output.credit()));
                        }
                        Ok(())
                    }
                }),
            )
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let mut stream = conn
            .open_stream(HandlerId::new(1), None)
            .max_window(OUT_WINDOW)
            .await
            .expect("open");
        // The caller reads nothing: the handler sends exactly its window, then waits.
        for i in 0..OUT_CAP {
            let (n, credit) = sent.recv().await.expect("sent");
            let left = OUT_WINDOW - u64::from(i + 1) * COST;
            assert_eq!((n, credit), (i, left as usize));
        }
        stays_quiet(&mut sent).await;
        // Reading resumes the handler; everything arrives, in order.
        for i in 0..100 {
            assert_eq!(
                unnum(&stream.responses.next().await.expect("item").expect("ok")),
                i
            );
        }
        assert!(stream.responses.next().await.is_none());
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_handler_that_stops_reading_holds_the_caller_at_its_window() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        let (go_tx, go_rx) = mpsc::unbounded_channel::<()>();
        let go_rx = std::sync::Arc::new(tokio::sync::Mutex::new(go_rx));
        c.managers[1]
            .register_stream(
                HandlerId::new(2),
                StreamHandler::new(move |mut call: StreamCall| {
                    let go_rx = go_rx.clone();
                    async move {
                        let _ = go_rx.lock().await.recv().await;
                        let mut input = call.take_input()?;
                        let mut n = 0;
                        while let Some(msg) = input.recv().await {
                            assert_eq!(unnum(&msg?), n);
                            n += 1;
                        }
                        call.output.send(num(n)).await?;
                        Ok(())
                    }
                })
                .with_input()
                .max_window(IN_WINDOW),
            )
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn
            .open_stream(HandlerId::new(2), None)
            .await
            .expect("open");
        let mut requests = stream.requests.expect("input");
        let (sent_tx, mut sent) = mpsc::unbounded_channel::<u32>();
        let writer = tokio::spawn(async move {
            for i in 0..50 {
                requests.send(num(i)).await.expect("send");
                let _ = sent_tx.send(i);
            }
            requests.finish().await.expect("finish");
        });
        for i in 0..IN_CAP {
            assert_eq!(sent.recv().await, Some(i));
        }
        stays_quiet(&mut sent).await;
        go_tx.send(()).expect("go");
        writer.await.expect("writer");
        let mut responses = stream.responses;
        assert_eq!(
            unnum(&responses.next().await.expect("count").expect("ok")),
            50
        );
        assert!(responses.next().await.is_none());
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_blocked_on_full_windows_lose_nothing_when_one_resumes() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        // The handler first sends 40 messages without reading, then reads everything.
        c.managers[1]
            .register_stream(
                HandlerId::new(3),
                StreamHandler::new(|mut call: StreamCall| async move {
                    for i in 0..40 {
                        call.output.send(num(i)).await?;
                    }
                    let mut input = call.take_input()?;
                    let mut n = 0;
                    while let Some(msg) = input.recv().await {
                        assert_eq!(unnum(&msg?), n);
                        n += 1;
                    }
                    call.output.send(num(1_000_000 + n)).await?;
                    Ok(())
                })
                .with_input()
                .max_window(IN_WINDOW),
            )
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let stream = conn
            .open_stream(HandlerId::new(3), None)
            .max_window(OUT_WINDOW)
            .await
            .expect("open");
        let mut requests = stream.requests.expect("input");
        let mut responses = stream.responses;
        // The caller sends 40 without reading: both windows fill, both sides wait.
        let (blocked_tx, blocked) = oneshot::channel::<()>();
        let mut blocked_tx = Some(blocked_tx);
        let writer = tokio::spawn(async move {
            for i in 0..40 {
                if i == IN_CAP {
                    if let Some(tx) = blocked_tx.take() {
                        let _ = tx.send(());
                    }
                }
                requests.send(num(i)).await.expect("send");
            }
            requests.finish().await.expect("finish");
        });
        blocked.await.expect("writer reached a full window");
        // The caller resumes reading: the handler drains its output, then its input.
        for i in 0..40 {
            assert_eq!(
                unnum(&responses.next().await.expect("item").expect("ok")),
                i
            );
        }
        assert_eq!(
            unnum(&responses.next().await.expect("count").expect("ok")),
            1_000_040
        );
        assert!(responses.next().await.is_none());
        writer.await.expect("writer");
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_on_one_connection_all_complete() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register_stream(
                HandlerId::new(5),
                StreamHandler::new(|mut call: StreamCall| async move {
                    let base = unnum(&call.payload.clone().unwrap_or_default());
                    for i in 0..10 {
                        call.output.send(num(base + i)).await?;
                    }
                    Ok(())
                }),
            )
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let streams = (0..1000u32).map(|s| {
            let conn = conn.clone();
            async move {
                let stream = conn
                    .open_stream(HandlerId::new(5), num(s * 100))
                    .max_window(2 * COST)
                    .await
                    .expect("open");
                let got: Vec<u32> = stream
                    .responses
                    .map(|r| unnum(&r.expect("ok")))
                    .collect()
                    .await;
                assert_eq!(got, (s * 100..s * 100 + 10).collect::<Vec<_>>());
            }
        });
        futures::future::join_all(streams).await;
        c.finish().await;
    })
    .await
}
