//! The six ways a caller can abandon a stream it was sending on: in each, the handler's
//! input ends with an error, never a clean end, and the call's `cancelled()` fires.

use std::future::IntoFuture;
use std::time::Duration;

use grid::{CallContext, Error, HandlerId, StreamReceiver};
use grid_tests::handlers::{read_to_end, upload};
use grid_tests::{num, within, Cluster};
use tokio::sync::mpsc;

const UPLOAD: HandlerId = HandlerId::new(1);

type Taken = mpsc::UnboundedReceiver<(StreamReceiver, CallContext)>;

async fn cluster() -> (Cluster, Taken) {
    let c = Cluster::start(&["alpha", "beta"], |b| b).await;
    let (tx, taken) = mpsc::unbounded_channel();
    c.managers[1]
        .register_stream(UPLOAD, upload(tx))
        .expect("register");
    c.connected().await;
    (c, taken)
}

/// Opens an upload, sends three messages, runs `abandon` on it, and checks what the
/// handler saw.
async fn abandoned(abandon: impl AsyncFnOnce(grid::Stream), expected: Error) {
    let (c, mut taken) = cluster().await;
    let conn = c.managers[0].connection("beta").expect("conn");
    let mut stream = conn
        .open_stream(UPLOAD, None)
        .deadline(Duration::from_secs(30))
        .await
        .expect("open");
    let requests = stream.requests.as_mut().expect("input");
    for i in 0..3 {
        requests.send(num(i)).await.expect("send");
    }
    let (input, ctx) = taken.recv().await.expect("started");
    abandon(stream).await;
    let (n, end) = read_to_end(input).await;
    assert!(n <= 3, "{n} messages");
    assert_eq!(
        end,
        Err(expected),
        "the handler's input must not look finished"
    );
    ctx.cancelled().await;
    c.finish().await;
}

#[tokio::test]
async fn dropping_the_whole_stream() {
    within(abandoned(async |s| drop(s), Error::Cancelled)).await
}

#[tokio::test]
async fn dropping_the_sender_then_the_receiver() {
    within(abandoned(
        async |s| {
            let (requests, responses) = (s.requests, s.responses);
            drop(requests);
            drop(responses);
        },
        Error::Cancelled,
    ))
    .await
}

#[tokio::test]
async fn dropping_the_receiver_then_the_sender() {
    within(abandoned(
        async |s| {
            let (requests, responses) = (s.requests, s.responses);
            drop(responses);
            tokio::task::yield_now().await;
            drop(requests);
        },
        Error::Cancelled,
    ))
    .await
}

#[tokio::test]
async fn cancelling_the_receiver() {
    within(abandoned(
        async |mut s| {
            s.responses.cancel();
            assert_eq!(s.responses.recv().await, None, "a cancelled receiver ends");
            // The sender stays; the stream is over for it too.
            let mut requests = s.requests.take().expect("input");
            assert_eq!(requests.send(num(9)).await, Err(Error::Cancelled));
        },
        Error::Cancelled,
    ))
    .await
}

#[tokio::test]
async fn aborting_the_task_that_holds_it() {
    within(abandoned(
        async |s| {
            let task = tokio::spawn(async move {
                let _s = s;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
            task.abort();
            assert!(task.await.expect_err("aborted").is_cancelled());
        },
        Error::Cancelled,
    ))
    .await
}

#[tokio::test]
async fn letting_its_deadline_pass() {
    within(async {
        let (c, mut taken) = cluster().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let mut stream = conn
            .open_stream(UPLOAD, None)
            .deadline(Duration::from_millis(300))
            .into_future()
            .await
            .expect("open");
        let requests = stream.requests.as_mut().expect("input");
        requests.send(num(1)).await.expect("send");
        let (input, ctx) = taken.recv().await.expect("started");
        // The caller keeps its ends and waits; the deadline ends the stream on both sides.
        assert_eq!(
            stream.responses.recv().await,
            Some(Err(Error::DeadlineExceeded))
        );
        let (_, end) = read_to_end(input).await;
        assert_eq!(end, Err(Error::DeadlineExceeded));
        ctx.cancelled().await;
        drop(stream);
        c.finish().await;
    })
    .await
}
