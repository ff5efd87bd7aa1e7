//! What the handshake negotiates (PROTOCOL.md §1): the protocol version, the largest
//! message each way, and whether messages carry checksums.

use bytes::Bytes;
use grid::{Error, HandlerId, Manager};
use grid_tests::handlers::echo_input;
use grid_tests::raw::{self, now_ms};
use grid_tests::{dialer_first, listener, shut_down, within};

const ECHO: HandlerId = HandlerId::new(1);
const SIZED: HandlerId = HandlerId::new(2);
const ECHO_INPUT: HandlerId = HandlerId::new(3);

const SMALL: usize = 1 << 20;
const LARGE: usize = 4 << 20;

/// Two connected nodes: `small` accepts messages up to 1 MiB, `large` up to 4 MiB.
async fn pair() -> (Manager, Manager) {
    let (ls, us) = listener().await;
    let (ll, ul) = listener().await;
    let small = grid_tests::builder("small")
        .peer("large", ul)
        .max_message_size(SMALL)
        .build()
        .expect("build");
    let large = grid_tests::builder("large")
        .peer("small", us)
        .max_message_size(LARGE)
        .build()
        .expect("build");
    for m in [&small, &large] {
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        // Answers with as many bytes as the request says.
        m.register_single(SIZED, |_, p: Option<Bytes>| async move {
            let n = p.as_ref().map(grid_tests::unnum).unwrap_or(0) as usize;
            Ok(Some(Bytes::from(vec![1u8; n])))
        })
        .expect("register");
        m.register_stream(ECHO_INPUT, echo_input())
            .expect("register");
    }
    tokio::spawn(small.clone().serve(ls));
    tokio::spawn(large.clone().serve(ll));
    grid_tests::connected(&small).await;
    grid_tests::connected(&large).await;
    (small, large)
}

fn too_large(r: grid::Result<impl std::fmt::Debug>, size: usize) {
    match r {
        Err(Error::MessageTooLarge { size: s, limit }) => assert_eq!((s, limit), (size, SMALL)),
        other => panic!("expected MessageTooLarge of {size} bytes over {SMALL}, got {other:?}"),
    }
}

#[tokio::test]
async fn nodes_with_different_maximum_sizes_send_within_the_smaller_and_stay_connected() {
    within(async {
        let (small, large) = pair().await;
        let to_small = large.connection("small").expect("conn");
        let to_large = small.connection("large").expect("conn");
        let over = Bytes::from(vec![7u8; 2 << 20]);
        // Either way, a request between the two limits is refused before it is sent.
        too_large(to_small.request(ECHO, over.clone()).await, over.len());
        too_large(to_large.request(ECHO, over.clone()).await, over.len());
        // So is a stream's initial payload, and a stream message (the stream carries on).
        too_large(
            to_small.open_stream(ECHO_INPUT, over.clone()).await,
            over.len(),
        );
        let stream = to_small.open_stream(ECHO_INPUT, None).await.expect("open");
        let (mut requests, mut responses) = stream.split().expect("the handler takes input");
        too_large(requests.send(over.clone()).await, over.len());
        requests.send(grid_tests::num(5)).await.expect("send");
        requests.finish().await.expect("finish");
        let back = responses.recv().await.expect("echo").expect("ok");
        assert_eq!(grid_tests::unnum(&back), 5);
        assert!(responses.recv().await.is_none(), "the stream ends");
        // Within the smaller limit everything passes, both ways.
        let fits = Bytes::from(vec![7u8; SMALL]);
        for conn in [&to_small, &to_large] {
            assert_eq!(
                conn.request(ECHO, fits.clone()).await.expect("call"),
                Some(fits.clone())
            );
        }
        // No call was lost to a dropped connection.
        for conn in [&to_small, &to_large] {
            assert_eq!(conn.stats().reconnects, 0, "{}", conn.remote());
        }
        grid_tests::finish_all(&[&small, &large]).await;
    })
    .await
}

#[tokio::test]
async fn an_answer_over_the_agreed_size_fails_only_its_call() {
    within(async {
        let (small, large) = pair().await;
        let to_large = small.connection("large").expect("conn");
        // `large` would send 2 MiB, which `small` does not accept: the handler side sends
        // an error instead, and the connection carries on.
        match to_large.request(SIZED, grid_tests::num(2 << 20)).await {
            Err(Error::MessageTooLarge { size, limit }) => {
                assert_eq!((size, limit), (2 << 20, SMALL));
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        assert_eq!(
            to_large
                .request(SIZED, grid_tests::num(1000))
                .await
                .expect("call")
                .map(|b| b.len()),
            Some(1000)
        );
        assert_eq!(to_large.stats().reconnects, 0);
        grid_tests::finish_all(&[&small, &large]).await;
    })
    .await
}

#[tokio::test]
async fn the_acceptor_answers_with_its_version_and_refuses_version_1_naming_both() {
    within(async {
        let (acceptor, url) = raw::acceptor().await;
        let (d, _) = dialer_first();
        let mut newer = raw::connect_request(d, now_ms());
        newer.terms.version = Some(7);
        let answer = raw::offer(&url, newer, true).await.expect("an answer");
        assert!(answer.accepted, "{}", answer.reason);
        assert_eq!(answer.terms.version, Some(2));
        for old in [Some(1), None, Some(0)] {
            let mut request = raw::connect_request(d, now_ms());
            request.terms.version = old;
            let answer = raw::offer(&url, request, true).await.expect("an answer");
            assert!(!answer.accepted, "{old:?} accepted");
            let v = old.unwrap_or(1);
            assert!(
                answer.reason.contains(&format!("version {v}"))
                    && answer.reason.contains("version 2"),
                "{}",
                answer.reason
            );
        }
        shut_down(&acceptor).await;
    })
    .await
}

#[tokio::test]
async fn a_peer_announcing_a_maximum_message_size_under_512_bytes_is_refused() {
    within(async {
        let (acceptor, url) = raw::acceptor().await;
        let (d, _) = dialer_first();
        for (size, accepted) in [(Some(100), false), (Some(511), false), (Some(512), true)] {
            let mut request = raw::connect_request(d, now_ms());
            request.terms.max_message_size = size;
            let answer = raw::offer(&url, request, true).await.expect("an answer");
            assert_eq!(answer.accepted, accepted, "{size:?}: {}", answer.reason);
            if !accepted {
                assert!(
                    answer.reason.contains("maximum message size") && answer.reason.contains("512"),
                    "{}",
                    answer.reason
                );
            }
        }
        shut_down(&acceptor).await;
    })
    .await
}

#[tokio::test]
async fn the_acceptor_announces_what_it_accepts() {
    within(async {
        let (acceptor, url) = raw::acceptor().await;
        let (d, _) = dialer_first();
        let answer = raw::offer(&url, raw::connect_request(d, now_ms()), true)
            .await
            .expect("an answer");
        assert!(answer.accepted, "{}", answer.reason);
        assert_eq!(answer.terms.max_message_size, Some(16 << 20));
        // A plain listener asks for checksums.
        assert_eq!(answer.terms.checksums, Some(true));
        shut_down(&acceptor).await;
    })
    .await
}

#[tokio::test]
async fn a_connect_without_checksum_is_refused() {
    within(async {
        let (acceptor, url) = raw::acceptor().await;
        let (d, _) = dialer_first();
        let answer = raw::offer(&url, raw::connect_request(d, now_ms()), false).await;
        assert!(answer.is_none(), "answered {answer:?}");
        // The same Connect with its checksum is accepted.
        let answer = raw::offer(&url, raw::connect_request(d, now_ms()), true)
            .await
            .expect("an answer");
        assert!(answer.accepted, "{}", answer.reason);
        shut_down(&acceptor).await;
    })
    .await
}

#[tokio::test]
async fn no_websocket_extension_is_accepted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(async {
        let (acceptor, url) = raw::acceptor().await;
        let addr = url
            .trim_start_matches("ws://")
            .trim_end_matches("/grid/v1")
            .to_owned();
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let request = format!(
            "GET /grid/v1 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Authorization: Bearer {}\r\n\r\n",
            grid_tests::TOKEN
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(tcp.read(&mut byte).await.expect("read"), 1, "{answer:?}");
            answer.push(byte[0]);
        }
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(answer.starts_with("http/1.1 101"), "{answer}");
        assert!(!answer.contains("sec-websocket-extensions"), "{answer}");
        drop(tcp);
        shut_down(&acceptor).await;
    })
    .await
}
