//! What operators see: per-peer figures from the manager, and their Prometheus rendering.
//! (Spans per call are checked in `spans.rs`, a test binary of its own.)

use bytes::Bytes;
use grid::{HandlerId, State};
use grid_tests::{within, Cluster};

const ECHO: HandlerId = HandlerId::new(1);

#[tokio::test]
async fn manager_stats_per_peer_and_their_prometheus_rendering() {
    within(async {
        let c = Cluster::start(&["alpha", "beta", "gamma"], |b| b).await;
        for m in &c.managers {
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        for _ in 0..10 {
            conn.request(ECHO, Bytes::from_static(b"x"))
                .await
                .expect("call");
        }
        let stats = c.managers[0].stats();
        assert_eq!(stats.local, "alpha");
        let peers: Vec<&str> = stats.peers.iter().map(|p| p.peer.as_str()).collect();
        assert_eq!(peers, ["beta", "gamma"]);
        let beta = &stats.peers[0];
        assert_eq!(beta.state, State::Connected);
        assert!(beta.stats.messages_out >= 10, "{beta:?}");

        let text = stats.to_prometheus();
        let line = |name: &str, peer: &str| {
            let prefix = format!("{name}{{local=\"alpha\",peer=\"{peer}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
                .to_owned()
        };
        assert_eq!(line("grid_connected", "beta"), "1");
        let sent: f64 = line("grid_messages_out_total", "beta")
            .parse()
            .expect("number");
        assert!(sent >= 10.0);
        assert_eq!(line("grid_in_flight_calls", "gamma"), "0");
        // No large payload went: the chunk window is still at its start.
        assert_eq!(
            line("grid_chunk_window_bytes", "beta"),
            (256 << 10).to_string()
        );
        assert!(text.contains("# TYPE grid_messages_out_total counter"));
        assert!(text.contains("# TYPE grid_connected gauge"));
        // Every sample line is `name{labels} value` with a number (or NaN) as value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().expect("value");
            assert!(
                value == "NaN" || value.parse::<f64>().is_ok(),
                "bad sample line {l:?}"
            );
        }
        c.finish().await;
    })
    .await
}

/// The serving node's figures per handler: calls, errors by kind, cancellations, in
/// flight and a latency histogram, labelled with the typed service and method.
#[tokio::test]
async fn per_handler_figures_count_calls_errors_cancellations_and_latency() {
    use grid_tests::storage::{DiskInfoReq, StorageClient, StorageServer};
    use std::time::Duration;

    #[derive(Default)]
    struct Disks;
    impl grid_tests::storage::Storage for Disks {
        async fn disk_info(
            &self,
            req: DiskInfoReq,
        ) -> Result<grid_tests::storage::DiskInfo, grid::RemoteError> {
            Ok(grid_tests::storage::DiskInfo {
                disk: req.disk,
                free: 1,
                caller: String::new(),
            })
        }
        async fn broken(&self, _req: String) -> Result<u32, grid::RemoteError> {
            Err(grid::RemoteError::new("broken"))
        }
        async fn hang(&self, _req: ()) -> Result<(), grid::RemoteError> {
            std::future::pending().await
        }
        async fn walk_dir(
            &self,
            n: u32,
            mut out: grid::Sender<grid_tests::storage::Entry>,
        ) -> Result<(), grid::RemoteError> {
            for i in 0..n {
                out.send(&grid_tests::storage::Entry {
                    name: i.to_string(),
                })
                .await?;
            }
            Ok(())
        }
        async fn running_sum(
            &self,
            _start: u64,
            _input: grid::Receiver<u64>,
            _out: grid::Sender<u64>,
        ) -> Result<(), grid::RemoteError> {
            Ok(())
        }
    }

    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[1]
            .register(StorageServer::new(Disks))
            .expect("register");
        c.connected().await;
        let client = StorageClient::new(c.managers[0].connection("beta").expect("conn"));
        for _ in 0..3 {
            client
                .disk_info(DiskInfoReq { disk: "sda".into() })
                .await
                .expect("call");
        }
        for _ in 0..2 {
            assert!(client.broken("x".into()).await.is_err());
        }
        let hung = client
            .with_deadline(Duration::from_millis(50))
            .hang(())
            .await;
        assert_eq!(hung, Err(grid::Error::DeadlineExceeded));
        let mut entries = client.walk_dir(5).await.expect("open");
        while entries.recv().await.is_some() {}
        // The stopped handler reports as it is dropped: wait for it.
        let method = |name: &str| {
            let stats = c.managers[1].stats();
            stats
                .handlers
                .into_iter()
                .find(|h| h.method == Some(name))
                .unwrap_or_else(|| panic!("no figures for {name}"))
        };
        while method("hang").cancelled == 0 {
            tokio::task::yield_now().await;
        }
        let info = method("disk_info");
        assert_eq!(info.service, Some("Storage"));
        assert_eq!((info.calls, info.in_flight, info.cancelled), (3, 0, 0));
        assert!(info.errors.is_empty(), "{info:?}");
        assert_eq!(info.latency_buckets.iter().sum::<u64>(), 3);
        let broken = method("broken");
        assert_eq!(broken.errors, vec![("remote", 2)]);
        let hang = method("hang");
        assert_eq!((hang.calls, hang.in_flight, hang.cancelled), (1, 0, 1));
        assert_eq!(method("walk_dir").calls, 1);
        assert_eq!(method("running_sum").calls, 0);

        let text = c.managers[1].stats().to_prometheus();
        let labels = |m: &str, id: u32| {
            format!("local=\"beta\",handler=\"{id:#010x}\",service=\"Storage\",method=\"{m}\"")
        };
        let ids = |m: &str| method(m).handler.get();
        for needle in [
            format!(
                "grid_handler_calls_total{{{}}} 3",
                labels("disk_info", ids("disk_info"))
            ),
            format!(
                "grid_handler_errors_total{{{},kind=\"remote\"}} 2",
                labels("broken", ids("broken"))
            ),
            format!(
                "grid_handler_cancelled_total{{{}}} 1",
                labels("hang", ids("hang"))
            ),
            format!(
                "grid_handler_duration_seconds_bucket{{{},le=\"+Inf\"}} 3",
                labels("disk_info", ids("disk_info"))
            ),
            format!(
                "grid_handler_duration_seconds_count{{{}}} 3",
                labels("disk_info", ids("disk_info"))
            ),
            "# TYPE grid_handler_duration_seconds histogram".to_owned(),
        ] {
            assert!(text.contains(&needle), "no {needle:?} in:\n{text}");
        }
        drop(entries);
        c.finish().await;
    })
    .await
}
