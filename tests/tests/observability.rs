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
