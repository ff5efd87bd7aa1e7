//! Connections that must be refused, with their reasons: bad token, unknown host, wrong
//! path, clock skew, wrong direction.

use std::time::Duration;

use grid::{Error, State};
use grid_tests::raw::{acceptor, hello, http_status, now_ms, upgrade};
use grid_tests::{builder, dialer_first, listener, shut_down, wait_state, within, TOKEN};

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
            Err(grid_tests::NOT_SENT)
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
