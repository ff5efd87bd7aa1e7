//! Streams that outlive a lost connection: the proxy cuts the link mid-stream; the same
//! peer process is back within the grace period; the stream carries on with every message
//! once, in order. A peer that stays away or comes back as a new process fails them.

use futures::StreamExt;
use grid::HandlerId;
use grid_tests::{handlers::echo_input, num, unnum, within, ProxiedPair};
use tokio::net::TcpListener;

const ECHO: HandlerId = HandlerId::new(1);

#[tokio::test]
async fn a_stream_cut_mid_way_carries_on_when_the_peer_is_back() {
    within(async {
        let (pair, to_acceptor) = echo_pair(|b| b).await;
        let stream = to_acceptor.open_stream(ECHO, None).await.expect("open");
        let (mut requests, responses) = stream.split().expect("input");
        let total = 2000u32;
        let reader = tokio::spawn(read_in_order(responses));
        for i in 0..total {
            requests.send(num(i)).await.expect("send");
            if i == total / 2 {
                pair.proxy.cut();
            }
        }
        requests.finish().await.expect("finish");
        assert_eq!(reader.await.expect("task"), Ok(total));
        assert!(
            to_acceptor.stats().reconnects >= 1,
            "the stream went through a reconnect: {:?}",
            to_acceptor.stats()
        );
        pair.finish().await;
    })
    .await
}

/// A pair through the proxy, `configure`d, whose acceptor serves the stream echo; and the
/// dialer's connection to it.
async fn echo_pair(
    configure: impl Fn(grid::ManagerBuilder) -> grid::ManagerBuilder,
) -> (ProxiedPair, grid::Connection) {
    let pair = ProxiedPair::start(configure).await;
    pair.acceptor
        .register_stream(ECHO, echo_input())
        .expect("register");
    pair.connected().await;
    let (to_acceptor, _) = pair.connections();
    (pair, to_acceptor)
}

/// Reads numbered messages to the end: how many, or where one was missing or out of order.
async fn read_in_order(mut responses: grid::StreamReceiver) -> Result<u32, String> {
    let mut next = 0u32;
    while let Some(item) = responses.next().await {
        let got = unnum(&item.map_err(|e| format!("after {next}: {e}"))?);
        if got != next {
            return Err(format!("got {got} where {next} was expected"));
        }
        next += 1;
    }
    Ok(next)
}

/// A stream to the echo, through which a first message went and came back.
async fn echoing(conn: &grid::Connection) -> (grid::StreamSender, grid::StreamReceiver) {
    let stream = conn.open_stream(ECHO, None).await.expect("open");
    let (mut requests, mut responses) = stream.split().expect("input");
    requests.send(num(0)).await.expect("send");
    assert_eq!(
        responses.next().await.map(|r| unnum(&r.expect("ok"))),
        Some(0)
    );
    (requests, responses)
}

/// Waits until the connection has come back `n` times in all.
async fn reconnected(conn: &grid::Connection, n: u64) {
    let mut state = conn.watch_state();
    while conn.stats().reconnects < n || conn.state() != grid::State::Connected {
        let _ = state.changed().await;
    }
}

#[tokio::test]
async fn a_stream_through_a_hundred_cuts_delivers_every_message_once_in_order() {
    grid_tests::within_secs(60, async {
        let (pair, to_acceptor) = echo_pair(|b| b).await;
        let stream = to_acceptor.open_stream(ECHO, None).await.expect("open");
        let (mut requests, responses) = stream.split().expect("input");
        let cuts = 100u64;
        let reader = tokio::spawn(read_in_order(responses));
        let mut sent = 0u32;
        for cut in 1..=cuts {
            // A few hundred messages (some on their way when the link dies), then a cut.
            for _ in 0..(50 + (cut * 37) % 300) {
                requests.send(num(sent)).await.expect("send");
                sent += 1;
            }
            pair.proxy.cut();
            reconnected(&to_acceptor, cut).await;
        }
        requests.finish().await.expect("finish");
        assert_eq!(reader.await.expect("task"), Ok(sent));
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn streams_fail_as_lost_when_the_peer_stays_away_past_the_grace_period() {
    within(async {
        let (pair, to_acceptor) =
            echo_pair(|b| b.resume_grace(std::time::Duration::from_millis(200))).await;
        let (_requests, mut responses) = echoing(&to_acceptor).await;
        // The peer goes away for good: its node stops while the link is down.
        pair.proxy.freeze();
        pair.proxy.cut();
        pair.acceptor.shutdown().await;
        let end = responses.next().await;
        assert_eq!(
            end,
            Some(Err(grid_tests::LOST)),
            "the stream fails once the grace passed"
        );
        grid_tests::shut_down(&pair.dialer).await;
    })
    .await
}

#[tokio::test]
async fn sixty_four_mib_through_a_three_second_cut_arrive_whole() {
    grid_tests::within_secs(60, async {
        let (pair, to_acceptor) = echo_pair(|b| b).await;
        let stream = to_acceptor.open_stream(ECHO, None).await.expect("open");
        let (mut requests, mut responses) = stream.split().expect("input");
        let chunk = 64 * 1024;
        let total = 64 << 20;
        // A running checksum of what was sent and of what came back.
        let sum = |acc: u64, bytes: &[u8]| {
            bytes.iter().fold(acc, |a, &b| {
                a.wrapping_mul(0x100_0000_01b3).wrapping_add(u64::from(b))
            })
        };
        let reader = tokio::spawn(async move {
            let (mut got, mut acc) = (0usize, 0u64);
            while let Some(item) = responses.next().await {
                let bytes = item.map_err(|e| format!("after {got} bytes: {e}"))?;
                got += bytes.len();
                acc = sum(acc, &bytes);
            }
            Ok::<_, String>((got, acc))
        });
        let mut sent_sum = 0u64;
        for i in 0..total / chunk {
            let block: Vec<u8> = (0..chunk).map(|j| (i * 31 + j * 7) as u8).collect();
            sent_sum = sum(sent_sum, &block);
            requests
                .send(bytes::Bytes::from(block))
                .await
                .expect("send");
            if i == total / chunk / 2 {
                // Half way: the link is down for three seconds (new links hang), then back.
                pair.proxy.freeze();
                pair.proxy.cut();
                let proxy = &pair.proxy;
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                proxy.thaw();
            }
        }
        requests.finish().await.expect("finish");
        assert_eq!(reader.await.expect("task"), Ok((total, sent_sum)));
        assert!(to_acceptor.stats().reconnects >= 1);
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn streams_fail_as_lost_when_the_peer_comes_back_as_a_new_process() {
    within(async {
        use grid_tests::{builder, dialer_first, listener, proxy::Proxy, url_of};
        let (d, a) = dialer_first();
        let (dl, d_url) = listener().await;
        let (al, _) = listener().await;
        let target = al.local_addr().expect("addr");
        let proxy = Proxy::start(target).await;
        let dialer = builder(d)
            .peer(a, url_of(proxy.addr()))
            .build()
            .expect("dialer");
        let acceptor = builder(a).peer(d, d_url.clone()).build().expect("acceptor");
        acceptor
            .register_stream(ECHO, echo_input())
            .expect("register");
        tokio::spawn(dialer.clone().serve(dl));
        let serving = tokio::spawn(acceptor.clone().serve(al));
        grid_tests::connected(&dialer).await;
        let to_acceptor = dialer.connection(a).expect("conn");
        let (requests, mut responses) = echoing(&to_acceptor).await;
        let first = to_acceptor.remote_instance();
        // The link dies and, before it is back, the acceptor's process is replaced.
        proxy.freeze();
        proxy.cut();
        acceptor.shutdown().await;
        let _ = serving.await;
        let again = builder(a).peer(d, d_url).build().expect("acceptor again");
        again.register_stream(ECHO, echo_input()).expect("register");
        tokio::spawn(
            again
                .clone()
                .serve(TcpListener::bind(target).await.expect("rebind")),
        );
        proxy.thaw();
        assert_eq!(
            responses.next().await,
            Some(Err(grid_tests::LOST)),
            "a new instance has none of the old one's streams"
        );
        assert_ne!(to_acceptor.remote_instance(), first, "a new instance");
        drop(requests);
        grid_tests::finish_all(&[&dialer, &again]).await;
    })
    .await
}
