//! The main demo: three nodes in one process doing single calls and streams (a handler
//! stream and a two-way stream), then one node goes down and comes back while the others
//! see `Disconnected` and the reconnect.
//!
//! Run with `cargo run -p grid-examples --example cluster`.

use std::time::Duration;

use futures::StreamExt;
use grid::{Bytes, Error, HandlerId, Manager, RemoteError, State, StreamCall, StreamHandler};
use tokio::net::TcpListener;

/// `get(key)` on a node's little key-value map.
const GET: HandlerId = HandlerId::new(1);
/// `whoami`: answers with the node's name and the caller's.
const WHOAMI: HandlerId = HandlerId::new(2);
/// `countdown(n)`: a handler stream of n, n-1, ..., 1.
const COUNTDOWN: HandlerId = HandlerId::new(3);
/// `shout`: a two-way stream answering every message upper-cased.
const SHOUT: HandlerId = HandlerId::new(4);

const NAMES: [&str; 3] = ["node-1", "node-2", "node-3"];

async fn start_node(name: &str, listener: TcpListener, urls: &[String]) -> Result<Manager, Error> {
    let mut builder = Manager::builder()
        .local(name)
        .token("demo-secret")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500));
    for (peer, url) in NAMES.iter().zip(urls) {
        builder = builder.peer(*peer, url.clone());
    }
    let manager = builder.build()?;
    let me = name.to_owned();
    manager.register_single(WHOAMI, move |ctx, _| {
        let me = me.clone();
        async move { Ok(Bytes::from(format!("{me} (called by {})", ctx.caller()))) }
    })?;
    let me = name.to_owned();
    manager.register_single(GET, move |_, key: Option<Bytes>| {
        let me = me.clone();
        async move {
            let key = key.ok_or_else(|| RemoteError::new("get needs a key"))?;
            match &key[..] {
                b"color" => Ok(Bytes::from(format!("{me} likes teal"))),
                _ => Err(RemoteError::new(format!(
                    "{me}: no such key {:?}",
                    String::from_utf8_lossy(&key)
                ))),
            }
        }
    })?;
    manager.register_stream(
        COUNTDOWN,
        StreamHandler::new(|mut call: StreamCall| async move {
            let from = call
                .payload
                .as_deref()
                .and_then(|p| p.first().copied())
                .unwrap_or(3);
            for i in (1..=from).rev() {
                call.output
                    .send(Bytes::from(i.to_string()))
                    .await
                    .map_err(remote)?;
            }
            Ok(())
        })
        .out_capacity(2),
    )?;
    manager.register_stream(
        SHOUT,
        StreamHandler::new(|mut call: StreamCall| async move {
            let mut input = call
                .input
                .take()
                .ok_or_else(|| RemoteError::new("no input"))?;
            while let Some(msg) = input.recv().await {
                let upper = msg.map_err(remote)?.to_ascii_uppercase();
                call.output.send(Bytes::from(upper)).await.map_err(remote)?;
            }
            Ok(())
        })
        .in_capacity(4)
        .out_capacity(4),
    )?;
    tokio::spawn(manager.clone().serve(listener));
    Ok(manager)
}

fn remote(e: Error) -> RemoteError {
    RemoteError::new(e.to_string())
}

fn text(b: Option<Bytes>) -> String {
    String::from_utf8_lossy(&b.unwrap_or_default()).into_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for _ in NAMES {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!("ws://{}/grid/v1", l.local_addr()?));
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (name, l) in NAMES.iter().zip(listeners) {
        nodes.push(start_node(name, l, &urls).await?);
    }
    println!("started {} nodes on {}", nodes.len(), urls.join(", "));
    for n in &nodes {
        for c in n.connections() {
            tokio::time::timeout(Duration::from_secs(10), c.wait_for_connect()).await??;
        }
    }
    println!("every pair is connected (one WebSocket per pair; both sides call over it)");

    for n in &nodes {
        for c in n.connections() {
            let answer = c.request(WHOAMI, None).await?;
            println!("  {} -> {}: {}", n.local(), c.remote(), text(answer));
        }
    }
    let to_3 = nodes[0].connection("node-3")?;
    println!(
        "node-1 get(color) on node-3: {}",
        text(to_3.request(GET, Bytes::from("color")).await?)
    );
    match to_3.request(GET, Bytes::from("shape")).await {
        Err(Error::Remote(e)) => println!("node-1 get(shape) on node-3 failed remotely: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    match to_3
        .request(GET, Bytes::from("color"))
        .deadline(Duration::from_millis(0))
        .await
    {
        Err(e) => println!("a call with a zero deadline: {e}"),
        Ok(_) => println!("unexpected: a zero deadline succeeded"),
    }

    let to_2 = nodes[0].connection("node-2")?;
    let mut countdown = to_2
        .open_stream(COUNTDOWN, Bytes::from_static(&[5]))
        .await?;
    let mut seen = Vec::new();
    while let Some(item) = countdown.responses.next().await {
        seen.push(text(Some(item?)));
    }
    println!("node-1 countdown stream from node-2: {}", seen.join(" "));
    let shout = to_2.open_stream(SHOUT, None).await?;
    let mut requests = shout.requests.ok_or("shout takes input")?;
    let mut responses = shout.responses;
    for word in ["grid", "streams", "both", "ways"] {
        requests.send(Bytes::from(word)).await?;
        let answer = responses.next().await.ok_or("stream ended early")??;
        println!(
            "  node-1 -> node-2 shout {word:?} -> {:?}",
            text(Some(answer))
        );
    }
    requests.close().await?;
    println!(
        "  shout stream ended cleanly: {}",
        responses.next().await.is_none()
    );

    println!("shutting node-3 down...");
    let old = nodes.pop().ok_or("no node")?;
    old.shutdown().await;
    let mut watch = to_3.watch_state();
    watch.wait_for(|s| *s != State::Connected).await?;
    match to_3.request(WHOAMI, None).await {
        Err(e) => println!("node-1 -> node-3 while it is down: {e}"),
        Ok(_) => println!("unexpected: node-3 answered while down"),
    }

    println!("bringing node-3 back on the same address...");
    let addr = urls[2]
        .trim_start_matches("ws://")
        .trim_end_matches("/grid/v1")
        .to_owned();
    let listener = TcpListener::bind(&addr).await?;
    nodes.push(start_node("node-3", listener, &urls).await?);
    tokio::time::timeout(Duration::from_secs(10), to_3.wait_for_connect()).await??;
    println!(
        "node-1 -> node-3 reconnected ({} reconnect(s), node-3 restarted: {})",
        to_3.stats().reconnects,
        to_3.stats().remote_restarts > 0
    );
    println!(
        "  node-1 -> node-3: {}",
        text(to_3.request(WHOAMI, None).await?)
    );
    let s = to_3.stats();
    println!(
        "node-1 -> node-3 stats: {} messages out in {} frames, {} in; last ping rtt {:?}",
        s.messages_out, s.frames_out, s.messages_in, s.last_ping_rtt
    );
    for n in &nodes {
        n.shutdown().await;
    }
    println!("all nodes shut down cleanly");
    Ok(())
}
