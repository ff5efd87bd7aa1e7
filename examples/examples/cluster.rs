//! The main demo: three nodes in one process, each serving a typed key-value service.
//! They make single calls, a handler stream and a two-way stream; then one node goes down
//! and comes back while the others see `Disconnected` and the reconnect.
//!
//! node-1 serves its status page (`Manager::status_router`) and prints its address; with
//! `--stay` the cluster stays up after the demo until Ctrl-C, to look at the page or to
//! call the nodes with `grid-cli` (each admits the client `grid-cli`).
//!
//! Run with `cargo run -p grid-examples --example cluster [-- --stay]`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/kv.rs"]
mod kv;
#[path = "common/logging.rs"]
mod logging;

use std::time::Duration;

use grid::{Error, Manager, State};
use kv::{Entry, KvClient, KvServer, Store};
use tokio::net::TcpListener;

const NAMES: [&str; 3] = ["node-1", "node-2", "node-3"];

async fn start(name: &str, listener: TcpListener, urls: &[String]) -> Result<Manager, Error> {
    let m = common::builder(name, &NAMES, urls)
        .client("grid-cli")
        .build()?;
    m.register(KvServer::new(Store::new(name)))?;
    tokio::spawn(m.clone().serve(listener));
    Ok(m)
}

fn step(text: &str) {
    println!("\n== {text}");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let (listeners, urls) = common::listeners(3).await?;
    let mut nodes = Vec::new();
    for (name, l) in NAMES.iter().zip(listeners) {
        nodes.push(start(name, l, &urls).await?);
    }
    step("three nodes start; every pair shares one WebSocket");
    for n in &nodes {
        for c in n.connections().filter(|c| !c.is_client()) {
            tokio::time::timeout(Duration::from_secs(10), c.wait_for_connect()).await??;
            let who = if c.is_dialer() { "dialed" } else { "accepted" };
            println!("{} {who} {}", n.local(), c.remote());
        }
    }

    let page = TcpListener::bind("127.0.0.1:0").await?;
    let page_at = page.local_addr()?;
    let router = nodes[0].status_router("/status");
    tokio::spawn(async move { axum::serve(page, router).await });
    println!(
        "node-1's status page: http://{page_at}/status (as JSON: http://{page_at}/status/json)"
    );

    step("single calls, both directions on the same connection");
    let kv_2_from_1 = KvClient::new(nodes[0].connection("node-2")?);
    let kv_1_from_2 = KvClient::new(nodes[1].connection("node-1")?);
    let stored = kv_2_from_1
        .put(Entry {
            key: "color".into(),
            value: "teal".into(),
        })
        .await?;
    println!("node-1 put color=teal on node-2: {stored}");
    let stored = kv_1_from_2
        .put(Entry {
            key: "shape".into(),
            value: "round".into(),
        })
        .await?;
    println!("node-2 put shape=round on node-1: {stored}");
    let kv_2_from_3 = KvClient::new(nodes[2].connection("node-2")?);
    println!(
        "node-3 get color on node-2: {:?}",
        kv_2_from_3.get("color".into()).await?
    );
    match kv_2_from_3
        .put(Entry {
            key: String::new(),
            value: "x".into(),
        })
        .await
    {
        Err(Error::Remote(e)) => println!("node-3 put with an empty key failed on node-2: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    step("a two-way stream: node-3 streams entries to node-1, which acknowledges each");
    let kv_1_from_3 = KvClient::new(nodes[2].connection("node-1")?);
    let (mut entries, mut acks) = kv_1_from_3.bulk_put("node-3".into()).await?;
    for i in 0..5 {
        entries
            .send(&Entry {
                key: format!("job/{i}"),
                value: format!("step {i}"),
            })
            .await?;
        let count = acks.recv().await.ok_or("stream ended early")??;
        println!("  sent job/{i}, node-1 has stored {count}");
    }
    entries.finish().await?;
    println!("  stream ended cleanly: {}", acks.recv().await.is_none());

    step("a handler stream: node-2 scans node-1's jobs");
    let mut scan = kv_1_from_2.scan("job/".into()).await?;
    while let Some(entry) = scan.recv().await {
        let entry = entry?;
        println!("  {} = {}", entry.key, entry.value);
    }

    step("node-3 goes down");
    let to_3 = nodes[0].connection("node-3")?;
    let kv_3_from_1 = KvClient::new(to_3.clone());
    nodes.pop().ok_or("no node")?.shutdown().await;
    to_3.watch_state()
        .wait_for(|s| *s != State::Connected)
        .await?;
    match kv_3_from_1.get("color".into()).await {
        Err(e) => println!("node-1 calls node-3 while it is down: {e}"),
        Ok(v) => println!("unexpected: node-3 answered {v:?}"),
    }

    step("node-3 comes back on the same address");
    let addr = urls[2]
        .trim_start_matches("ws://")
        .trim_end_matches("/grid/v1")
        .to_owned();
    nodes.push(start("node-3", TcpListener::bind(&addr).await?, &urls).await?);
    tokio::time::timeout(Duration::from_secs(10), to_3.wait_for_connect()).await??;
    let s = to_3.stats();
    println!(
        "node-1 reconnected to node-3 ({} reconnect, restart seen: {})",
        s.reconnects,
        s.remote_restarts > 0
    );
    println!(
        "node-3 starts empty after its restart: get color = {:?}",
        kv_3_from_1.get("color".into()).await?
    );

    step(
        "stats node-1 keeps for node-2 (also as Prometheus text: Manager::stats().to_prometheus())",
    );
    let s = nodes[0].connection("node-2")?.stats();
    println!(
        "messages out {} (in {} frames), messages in {}; bytes out {}, bytes in {}; last ping rtt {:?}",
        s.messages_out, s.frames_out, s.messages_in, s.bytes_out, s.bytes_in, s.last_ping_rtt
    );
    if std::env::args().any(|a| a == "--stay") {
        step("the cluster stays up until Ctrl-C");
        println!("status page: http://{page_at}/status");
        for (name, url) in NAMES.iter().zip(&urls) {
            println!("  grid-cli --token {} status {name}={url}", common::TOKEN);
        }
        tokio::signal::ctrl_c().await?;
    }
    for n in &nodes {
        n.shutdown().await;
    }
    println!("\nall nodes shut down cleanly");
    Ok(())
}
