//! grid served on an existing axum server, beside the application's own routes.

use bytes::Bytes;
use grid::HandlerId;
use grid_tests::raw::{http_status, upgrade};
use grid_tests::{builder, dialer_first, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ECHO: HandlerId = HandlerId::new(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_mounted_on_axum_beside_other_routes() {
    within(async {
        let (d, a) = dialer_first();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("ws://{addr}/grid/v1");
        // The acceptor is served by axum; it never dials, so its peer URL is unused.
        let acceptor = builder(a)
            .peer(d, "ws://127.0.0.1:1/grid/v1")
            .build()
            .expect("build");
        acceptor
            .register_single(ECHO, |ctx, p: Option<Bytes>| async move {
                let mut answer = ctx.caller().as_bytes().to_vec();
                answer.extend_from_slice(&p.unwrap_or_default());
                Ok(Bytes::from(answer))
            })
            .expect("register");
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .merge(acceptor.axum_router());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        // The application's own route still answers.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.expect("read");
        assert!(
            response.starts_with("HTTP/1.1 200") && response.ends_with("ok"),
            "{response}"
        );

        // Refusals before the upgrade, as with Manager::serve.
        assert_eq!(http_status(upgrade(&url, None).await), 401);
        assert_eq!(http_status(upgrade(&url, Some("wrong")).await), 403);

        // A grid peer connects through axum and both sides call each other.
        let dialer = builder(d).peer(a, url.clone()).build().expect("build");
        dialer
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        let to_acceptor = dialer.connection(a).expect("conn");
        to_acceptor.wait_for_connect().await.expect("connect");
        let answer = to_acceptor
            .request(ECHO, Bytes::from_static(b"!"))
            .await
            .expect("call");
        assert_eq!(answer, Some(Bytes::from(format!("{d}!"))));
        let back = acceptor.connection(d).expect("conn");
        back.wait_for_connect().await.expect("connected");
        assert_eq!(
            back.request(ECHO, Bytes::from_static(b"x"))
                .await
                .expect("call"),
            Some(Bytes::from_static(b"x"))
        );
        assert_eq!(to_acceptor.uses_checksums(), Some(true));

        grid_tests::finish_all(&[&dialer, &acceptor]).await;
        // The application's server runs on; the shut-down node refuses before the upgrade.
        assert_eq!(http_status(upgrade(&url, None).await), 503);
        server.abort();
    })
    .await
}

/// An axum server behind a TLS-terminating proxy, reached by a `wss://` dialer: the mount
/// cannot tell it is behind TLS and asks for checksums, the dialer adds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_dialer_reaches_an_axum_mount_behind_a_tls_terminating_proxy() {
    within(async {
        let pki = grid_tests::tls::pki();
        let (d, a) = dialer_first();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        let port = grid_tests::tls::tls_terminating_proxy(pki.server.clone(), target).await;
        let acceptor = builder(a)
            .peer(d, "ws://127.0.0.1:1/grid/v1")
            .build()
            .expect("build");
        acceptor
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        let app = acceptor.axum_router();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let dialer = builder(d)
            .peer(a, format!("wss://localhost:{port}/grid/v1"))
            .tls_client(pki.client.clone())
            .build()
            .expect("build");
        let conn = dialer.connection(a).expect("conn");
        conn.wait_for_connect().await.expect("connect");
        assert_eq!(conn.uses_checksums(), Some(true));
        let big = Bytes::from(vec![4u8; 100_000]);
        assert_eq!(
            conn.request(ECHO, big.clone()).await.expect("call"),
            Some(big)
        );
        assert_eq!(conn.stats().reconnects, 0);
        grid_tests::finish_all(&[&dialer, &acceptor]).await;
        server.abort();
    })
    .await
}

/// The manager's figures served at a path of the application's choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_router_serves_the_prometheus_text_at_its_path() {
    within(async {
        let c = grid_tests::Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        c.connected().await;
        let beta = c.managers[0].connection("beta").expect("conn");
        beta.request(ECHO, Bytes::from_static(b"x"))
            .await
            .expect("call");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = c.managers[1].metrics_router("/internal/metrics");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET /internal/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("content-type: text/plain; version=0.0.4"),
            "{response}"
        );
        assert!(
            response.contains("grid_handler_calls_total{local=\"beta\",handler=\"0x00000001\"} 1"),
            "{response}"
        );
        server.abort();
        c.finish().await;
    })
    .await
}
