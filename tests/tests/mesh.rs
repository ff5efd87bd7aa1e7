//! The seed's grid test: 2 to 8 managers in one process, all calling each other at once.

use bytes::Bytes;
use grid::HandlerId;
use grid_tests::{within, Cluster};

const TAG: HandlerId = HandlerId::new(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_calls_every_other_concurrently() {
    within(async {
        for n in 2..=8usize {
            let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let c = Cluster::start(&refs, |b| b).await;
            for m in &c.managers {
                let me = m.local().to_owned();
                m.register_single(TAG, move |ctx, p: Option<Bytes>| {
                    let answer = format!(
                        "{}>{}:{}",
                        ctx.caller(),
                        me,
                        String::from_utf8_lossy(&p.unwrap_or_default())
                    );
                    async move { Ok(Bytes::from(answer)) }
                })
                .expect("register");
            }
            c.connected().await;
            let mut calls = Vec::new();
            for m in &c.managers {
                for conn in m.connections() {
                    for i in 0..20 {
                        let conn = conn.clone();
                        let from = m.local().to_owned();
                        calls.push(async move {
                            let got = conn
                                .request(TAG, Bytes::from(i.to_string()))
                                .await
                                .expect("call");
                            assert_eq!(
                                got,
                                Some(Bytes::from(format!("{from}>{}:{i}", conn.remote())))
                            );
                        });
                    }
                }
            }
            assert_eq!(calls.len(), n * (n - 1) * 20);
            futures::future::join_all(calls).await;
            for m in &c.managers {
                for conn in m.connections() {
                    assert_eq!(
                        conn.stats().reconnects,
                        0,
                        "{} -> {}",
                        m.local(),
                        conn.remote()
                    );
                }
            }
            c.finish().await;
        }
    })
    .await
}
