//! `wss://` peers over rustls, with a certificate generated at test time.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use grid::tls::rustls::ClientConfig;
use grid::{Error, HandlerId, Manager, State, StreamCall, StreamHandler};
use grid_tests::tls::{pki, tls_terminating_proxy, Pki};
use grid_tests::{assert_idle, num, shut_down, wait_state, within, TOKEN};
use tokio::net::TcpListener;

const ECHO: HandlerId = HandlerId::new(1);
const COUNT: HandlerId = HandlerId::new(2);

async fn tls_pair(pki: &Pki) -> (Manager, Manager) {
    let la = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let lb = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ua = format!(
        "wss://localhost:{}/grid/v1",
        la.local_addr().expect("addr").port()
    );
    let ub = format!(
        "wss://localhost:{}/grid/v1",
        lb.local_addr().expect("addr").port()
    );
    let build = |local: &str| {
        grid_tests::builder(local)
            .peer("alpha", ua.clone())
            .peer("beta", ub.clone())
            .tls_client(pki.client.clone())
            .tls_server(pki.server.clone())
            .build()
            .expect("build")
    };
    let (a, b) = (build("alpha"), build("beta"));
    for m in [&a, &b] {
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        m.register_stream(
            COUNT,
            StreamHandler::new(|mut call: StreamCall| async move {
                for i in 0..100 {
                    call.output.send(num(i)).await?;
                }
                Ok(())
            }),
        )
        .expect("register");
    }
    tokio::spawn(a.clone().serve(la));
    tokio::spawn(b.clone().serve(lb));
    (a, b)
}

#[tokio::test]
async fn calls_and_streams_over_tls_without_checksums() {
    within(async {
        let pki = pki();
        let (a, b) = tls_pair(&pki).await;
        grid_tests::connected(&a).await;
        grid_tests::connected(&b).await;
        let conn = a.connection("beta").expect("conn");
        assert_eq!(conn.uses_checksums(), Some(false));
        assert_eq!(
            b.connection("alpha").expect("conn").uses_checksums(),
            Some(false)
        );
        let big = Bytes::from(vec![9u8; 300_000]);
        assert_eq!(
            conn.request(ECHO, big.clone()).await.expect("call"),
            Some(big)
        );
        let back = b.connection("alpha").expect("conn");
        assert_eq!(
            back.request(ECHO, Bytes::from_static(b"hi"))
                .await
                .expect("call"),
            Some(Bytes::from_static(b"hi"))
        );
        let stream = conn.open_stream(COUNT, None).await.expect("open");
        assert_eq!(stream.responses.count().await, 100);
        for m in [&a, &b] {
            assert_idle(m).await;
        }
        shut_down(&a).await;
        shut_down(&b).await;
    })
    .await
}

#[tokio::test]
async fn a_dialer_that_does_not_trust_the_certificate_is_refused() {
    within(async {
        let pki = pki();
        let other = pki_roots_of_another_authority();
        let lb = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ub = format!(
            "wss://localhost:{}/grid/v1",
            lb.local_addr().expect("addr").port()
        );
        let (d, acc) = grid_tests::dialer_first();
        let acceptor = grid_tests::builder(acc)
            .peer(d, "wss://localhost:1/grid/v1")
            .tls_client(pki.client.clone())
            .tls_server(pki.server.clone())
            .build()
            .expect("build");
        tokio::spawn(acceptor.clone().serve(lb));
        let dialer = Manager::builder()
            .local(d)
            .peer(acc, ub)
            .token(TOKEN)
            .tls_client(other)
            .build()
            .expect("build");
        let conn = dialer.connection(acc).expect("conn");
        wait_state(&conn, |s| s == State::ConnectionError).await;
        match conn.last_error() {
            Some(Error::Unreachable(why)) => assert!(why.contains("TLS"), "{why}"),
            other => panic!("expected a TLS failure, got {other:?}"),
        }
        shut_down(&dialer).await;
        shut_down(&acceptor).await;
    })
    .await
}

#[tokio::test]
async fn a_wss_dialer_reaches_a_plain_listener_through_a_tls_terminating_proxy() {
    within(async {
        let pki = pki();
        let (d, acc) = grid_tests::dialer_first();
        let (listener, _) = grid_tests::listener().await;
        let target = listener.local_addr().expect("addr");
        let port = tls_terminating_proxy(pki.server.clone(), target).await;
        let acceptor = grid_tests::builder(acc)
            .peer(d, "ws://127.0.0.1:1/grid/v1")
            .build()
            .expect("build");
        acceptor
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        tokio::spawn(acceptor.clone().serve(listener));
        let dialer = grid_tests::builder(d)
            .peer(acc, format!("wss://localhost:{port}/grid/v1"))
            .tls_client(pki.client.clone())
            .build()
            .expect("build");
        dialer
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        grid_tests::connected(&dialer).await;
        grid_tests::connected(&acceptor).await;
        let there = dialer.connection(acc).expect("conn");
        let back = acceptor.connection(d).expect("conn");
        // The dialer's transport is TLS, the acceptor's is not: the acceptor asks for
        // checksums, so both use them.
        assert_eq!(there.uses_checksums(), Some(true));
        assert_eq!(back.uses_checksums(), Some(true));
        for (conn, n) in [(&there, 70_000usize), (&back, 5)] {
            let payload = Bytes::from(vec![3u8; n]);
            assert_eq!(
                conn.request(ECHO, payload.clone()).await.expect("call"),
                Some(payload)
            );
        }
        assert_eq!(there.stats().reconnects, 0);
        for m in [&dialer, &acceptor] {
            assert_idle(m).await;
        }
        shut_down(&dialer).await;
        shut_down(&acceptor).await;
    })
    .await
}

#[test]
fn wss_peers_need_tls_client_settings() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    match Manager::builder()
        .local("a")
        .peer("b", "wss://localhost:1/grid/v1")
        .token(TOKEN)
        .build()
    {
        Err(Error::Config(msg)) => assert!(msg.contains("tls_client"), "{msg}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

fn pki_roots_of_another_authority() -> Arc<ClientConfig> {
    pki().client
}
