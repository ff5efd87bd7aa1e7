//! What keeping streams for a resume costs: a sender keeps what its peer has not
//! acknowledged, so a peer that never reads holds its senders to about one window each; and
//! a peer that never comes back frees everything once the grace period is over. The heap
//! is counted by a global allocator, so the tests here run one at a time.

use std::time::Duration;

use bytes::Bytes;
use grid::HandlerId;
use grid_tests::alloc::{exclusive, live, peak, reset_peak};
use grid_tests::{handlers::upload, within_secs, ProxiedPair};
use tokio::sync::mpsc;

#[global_allocator]
static ALLOC: grid_tests::alloc::Counting = grid_tests::alloc::Counting;

const HOLD: HandlerId = HandlerId::new(1);
/// The window every stream starts with (grid's default).
const WINDOW: usize = 256 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_messages_stay_within_the_windows_and_go_when_the_peer_never_comes_back() {
    let _one = exclusive().await;
    within_secs(60, async {
        let pair = ProxiedPair::start(|b| b.resume_grace(Duration::from_millis(300))).await;
        // The handler side takes each stream's input and never reads it.
        let (taken_tx, mut taken) = mpsc::unbounded_channel();
        pair.acceptor
            .register_stream(HOLD, upload(taken_tx))
            .expect("register");
        pair.connected().await;
        let (to_acceptor, from_dialer) = pair.connections();
        let before = live();
        reset_peak();
        let streams = 8;
        let msg = Bytes::from(vec![7u8; 1024]);
        let mut senders = Vec::new();
        let mut inputs = Vec::new();
        for _ in 0..streams {
            let stream = to_acceptor.open_stream(HOLD, None).await.expect("open");
            inputs.push(taken.recv().await.expect("taken"));
            let (mut requests, responses) = stream.split().expect("input");
            let msg = msg.clone();
            senders.push(tokio::spawn(async move {
                // Far more than a window: the sender waits for credit that never comes.
                for _ in 0..(8 * WINDOW / msg.len()) {
                    if requests.send(msg.clone()).await.is_err() {
                        break;
                    }
                }
                drop(responses);
            }));
        }
        // Every stream has filled the window it was given (the peer holds it unread).
        let per_stream = WINDOW / (msg.len() + 64) - 1;
        while (from_dialer.stats().messages_in as usize) < streams * per_stream {
            tokio::task::yield_now().await;
        }
        let grown = peak() - before;
        println!("{streams} streams whose peer never reads: {grown} bytes at the peak, both ends");
        // The peer's queues hold a window each, the senders keep as much for a resume.
        assert!(
            grown <= streams * 2 * WINDOW * 5 / 4 + (2 << 20),
            "{grown} bytes for {streams} streams of a {WINDOW}-byte window"
        );
        // The peer goes away for good: the link dies and its node stops.
        pair.proxy.freeze();
        pair.proxy.cut();
        drop(inputs);
        pair.acceptor.shutdown().await;
        for s in senders {
            s.await.expect("sender task");
        }
        let left = live().saturating_sub(before);
        println!("after the grace period: {left} bytes left");
        assert!(
            left <= 1 << 20,
            "{left} bytes still held after the grace period"
        );
        grid_tests::shut_down(&pair.dialer).await;
    })
    .await;
}
