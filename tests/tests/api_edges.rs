//! Edges of the public API: configuration errors, id space rules, panics in stream
//! handlers, waiting on a connection that shuts down.

use bytes::Bytes;
use futures::StreamExt;
use grid::{Error, HandlerId, Manager, StreamCall, StreamHandler};
use grid_tests::{builder, listener, shut_down, within, Cluster, TOKEN};

fn config_error(b: grid::ManagerBuilder) -> String {
    match b.build() {
        Err(Error::Config(msg)) => msg,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_builder_refuses_incomplete_or_invalid_configurations() {
    within(async {
        assert!(config_error(Manager::builder().token(TOKEN)).contains("local node name"));
        assert!(config_error(Manager::builder().local("a")).contains("authentication"));
        assert!(config_error(builder("a").peer("b", "http://x:1/grid/v1")).contains("ws://"));
        assert!(config_error(
            builder("a")
                .peer("b", "ws://x:1/grid/v1")
                .peer("b", "ws://y:1/grid/v1")
        )
        .contains("twice"));
        assert!(config_error(builder("a").route("grid")).contains("must start with '/'"));
        assert!(config_error(builder("a").max_message_size(0)).contains("max_message_size"));
        // Below 512 bytes grid's own control messages would not fit (see the engine's
        // oversize tests).
        assert!(config_error(builder("a").max_message_size(511)).contains("max_message_size"));
        // Listing the node itself among its peers is allowed and ignored.
        let m = builder("a")
            .peer("a", "ws://127.0.0.1:1/grid/v1")
            .build()
            .expect("build");
        assert_eq!(m.connections().count(), 0);
        shut_down(&m).await;
    })
    .await
}

#[test]
fn building_outside_a_runtime_is_a_clear_error() {
    let msg = config_error(Manager::builder().local("a").token(TOKEN));
    assert!(msg.contains("tokio runtime"), "{msg}");
}

#[tokio::test]
async fn single_and_stream_handlers_share_one_id_space_and_zero_is_reserved() {
    within(async {
        let m = builder("a").build().expect("build");
        let id = HandlerId::new(5);
        m.register_single(id, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("first");
        let stream = StreamHandler::new(|_call: StreamCall| async { Ok(()) });
        assert!(matches!(
            m.register_stream(id, stream.clone()),
            Err(Error::HandlerAlreadyExists { .. })
        ));
        assert!(matches!(
            m.register_single(id, |_, p: Option<Bytes>| async move { Ok(p) }),
            Err(Error::HandlerAlreadyExists { .. })
        ));
        // The same id under a subroute is another handler.
        m.register_stream_on(id, "disk-1", stream.clone())
            .expect("subroute");
        assert!(matches!(
            m.register_stream(HandlerId::new(0), stream),
            Err(Error::Config(_))
        ));
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn a_panicking_stream_handler_ends_its_stream_with_an_error_and_the_node_carries_on() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register_stream(
                HandlerId::new(1),
                StreamHandler::new(|mut call: StreamCall| async move {
                    call.output.send(Bytes::from_static(b"one")).await?;
                    if call.payload.is_none() {
                        panic!("stream handler blew up");
                    }
                    Ok(())
                }),
            )
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let items: Vec<_> = conn
            .open_stream(HandlerId::new(1), None)
            .await
            .expect("open")
            .responses
            .collect()
            .await;
        assert_eq!(items[0], Ok(Bytes::from_static(b"one")));
        match &items[1] {
            Err(Error::Remote(e)) => assert!(e.message.contains("stream handler blew up"), "{e}"),
            other => panic!("expected the panic as a remote error, got {other:?}"),
        }
        assert_eq!(items.len(), 2);
        // The node still serves.
        let ok: Vec<_> = conn
            .open_stream(HandlerId::new(1), Bytes::new())
            .await
            .expect("open")
            .responses
            .collect()
            .await;
        assert_eq!(ok, vec![Ok(Bytes::from_static(b"one"))]);
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn waiting_for_a_connection_that_shuts_down_returns_closed() {
    within(async {
        let (l, url) = listener().await;
        drop(l);
        let m = builder("alpha").peer("beta", url).build().expect("build");
        let conn = m.connection("beta").expect("conn");
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.wait_for_connect().await }
        });
        m.shutdown().await;
        assert_eq!(waiting.await.expect("task"), Err(Error::Closed));
        assert_eq!(
            conn.request(HandlerId::new(1), None).await,
            Err(Error::Closed)
        );
        assert!(matches!(
            conn.open_stream(HandlerId::new(1), None).await,
            Err(Error::Closed)
        ));
        assert_eq!(m.running_tasks(), 0);
    })
    .await
}

/// Once `shutdown` returns, the listener handed to a started `serve` is closed: the address
/// can be bound again at once (a node restarting on its port), whether the `serve` future
/// runs in a task of its own or is held, unpolled, by the code that shuts down.
#[tokio::test]
async fn the_address_is_free_again_when_shutdown_returns() {
    within(async {
        let (mut l, _) = listener().await;
        let addr = l.local_addr().expect("addr");
        for round in 0..10 {
            let m = builder("alpha").build().expect("build");
            let serving = tokio::spawn(m.clone().serve(l));
            tokio::task::yield_now().await;
            m.shutdown().await;
            l = tokio::net::TcpListener::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("round {round}: {addr} still taken: {e}"));
            assert_eq!(serving.await.expect("task").ok(), Some(()));
            assert_eq!(m.running_tasks(), 0);
        }
        // Held and started, then not polled while the manager shuts down (a `select!` on
        // the server and a signal, say): shutdown neither waits for it nor leaves the port
        // taken.
        let m = builder("alpha").build().expect("build");
        let serving = m.clone().serve(l);
        tokio::pin!(serving);
        assert!(futures::poll!(serving.as_mut()).is_pending());
        tokio::task::yield_now().await;
        m.shutdown().await;
        drop(
            tokio::net::TcpListener::bind(addr)
                .await
                .expect("the port is free while the future is still held"),
        );
        assert_eq!(serving.await.ok(), Some(()));
    })
    .await
}

/// Dropping the `serve` future stops accepting: its accepting task ends and the listener
/// is closed, so new connections are refused; the manager itself carries on.
#[tokio::test]
async fn dropping_the_serve_future_stops_accepting() {
    within(async {
        let (l, _) = listener().await;
        let addr = l.local_addr().expect("addr");
        let m = builder("alpha").build().expect("build");
        let baseline = m.running_tasks();
        let serving = tokio::spawn(m.clone().serve(l));
        while m.running_tasks() == baseline {
            tokio::task::yield_now().await;
        }
        serving.abort();
        assert!(serving.await.expect_err("aborted").is_cancelled());
        while m.running_tasks() > baseline {
            tokio::task::yield_now().await;
        }
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "nothing listens on {addr} any more"
        );
        m.shutdown().await;
        assert_eq!(m.running_tasks(), 0);
    })
    .await
}
