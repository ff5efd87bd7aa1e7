//! Connections that must be refused, with their reasons: bad token, unknown host, wrong
//! path, clock skew, wrong direction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use grid::codec::handshake::{self, ConnectRequest, ConnectResponse};
use grid::codec::{decode_frame, FrameLimits, Message, Op};
use grid::{Error, State};
use grid_tests::{builder, dialer_first, listener, shut_down, wait_state, within, TOKEN};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

/// An acceptor named after the second of `dialer_first`, listing the first as its peer.
async fn acceptor() -> (grid::Manager, String) {
    let (d, a) = dialer_first();
    let (l, url) = listener().await;
    // The acceptor's own URL for the dialer is never used (it does not dial).
    let m = builder(a)
        .peer(d, "ws://127.0.0.1:1/grid/v1")
        .build()
        .expect("build");
    tokio::spawn(m.clone().serve(l));
    (m, url)
}

async fn upgrade(
    url: &str,
    token: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tungstenite::Error,
> {
    let mut req = url.into_client_request().expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

fn http_status(r: Result<impl Sized, tungstenite::Error>) -> u16 {
    match r {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

/// Upgrades with the right token, sends a hand-made Connect and returns the answer.
async fn hello(url: &str, host: &str, clock_ms: i64) -> ConnectResponse {
    let mut ws = upgrade(url, Some(TOKEN)).await.expect("upgrade");
    let mut m = Message::new(Op::Connect);
    let req = ConnectRequest {
        host: host.into(),
        instance: grid::Uuid::new_v4().to_string(),
        clock_ms,
        token: TOKEN.into(),
    };
    m.payload = Some(Bytes::from(handshake::encode(&req)));
    ws.send(WsMessage::Binary(m.encode(true).into()))
        .await
        .expect("send");
    let frame = loop {
        match ws.next().await.expect("answer").expect("frame") {
            WsMessage::Binary(b) => break b,
            _ => continue,
        }
    };
    let msgs = decode_frame(&frame, FrameLimits::new(1 << 20)).expect("decode");
    assert_eq!(msgs[0].op, Op::ConnectResponse);
    handshake::decode(msgs[0].payload.as_deref().expect("payload")).expect("response")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[tokio::test]
async fn wrong_path_and_missing_or_bad_token_are_refused_before_the_upgrade() {
    within(async {
        let (m, url) = acceptor().await;
        let wrong_path = url.replace("/grid/v1", "/other");
        assert_eq!(http_status(upgrade(&wrong_path, Some(TOKEN)).await), 404);
        assert_eq!(http_status(upgrade(&url, None).await), 401);
        assert_eq!(
            http_status(upgrade(&url, Some("not-the-secret")).await),
            403
        );
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_dialer_with_a_bad_token_sees_the_refusal() {
    within(async {
        let (acc, url) = acceptor().await;
        let (d, a) = dialer_first();
        let dialer = grid::Manager::builder()
            .local(d)
            .peer(a, url)
            .token("wrong-secret")
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
            .build()
            .expect("build");
        let conn = dialer.connection(a).expect("conn");
        wait_state(&conn, |s| s == State::ConnectionError).await;
        match conn.last_error() {
            Some(Error::Rejected(reason)) => {
                assert!(
                    reason.contains("403") && reason.contains("token"),
                    "{reason}"
                )
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(
            conn.request(grid::HandlerId::new(1), None).await,
            Err(Error::Disconnected)
        );
        shut_down(&dialer).await;
        shut_down(&acc).await;
    })
    .await
}

#[tokio::test]
async fn unknown_host_is_rejected_with_its_reason() {
    within(async {
        let (m, url) = acceptor().await;
        let answer = hello(&url, "mallory", now_ms()).await;
        assert!(!answer.accepted);
        assert!(answer.reason.contains("unknown host"), "{}", answer.reason);
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn clock_skew_is_rejected_with_its_reason() {
    within(async {
        let (m, url) = acceptor().await;
        let (d, _) = dialer_first();
        let answer = hello(&url, d, now_ms() - 3_600_000).await;
        assert!(!answer.accepted);
        assert!(answer.reason.contains("clock skew"), "{}", answer.reason);
        // Within the bound it is accepted.
        let answer = hello(&url, d, now_ms() - 1_000).await;
        assert!(answer.accepted, "{}", answer.reason);
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_peer_dialing_the_wrong_way_is_rejected() {
    within(async {
        // The dialer of the pair listens too; the acceptor must not dial it.
        let (d, a) = dialer_first();
        let (l, url) = listener().await;
        let m = builder(d)
            .peer(a, "ws://127.0.0.1:1/grid/v1")
            .build()
            .expect("build");
        tokio::spawn(m.clone().serve(l));
        let answer = hello(&url, a, now_ms()).await;
        assert!(!answer.accepted);
        assert!(answer.reason.contains("dials"), "{}", answer.reason);
        shut_down(&m).await;
    })
    .await
}
