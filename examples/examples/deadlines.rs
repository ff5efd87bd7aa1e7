//! Deadlines and cancellation: a deadline travels to the handler and to the calls the
//! handler makes; a caller that gives up cancels the handler on the remote.
//!
//! Run with `cargo run -p grid-examples --example deadlines`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/logging.rs"]
mod logging;

use std::time::Duration;

use grid::{Bytes, CallContext, Error, HandlerId};

const SLOW: HandlerId = HandlerId::new(1);
const FORWARD: HandlerId = HandlerId::new(2);
const REMAINING: HandlerId = HandlerId::new(3);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let names = ["front", "middle", "back"];
    let (ls, urls) = common::listeners(3).await?;
    let mut nodes = Vec::new();
    for (name, l) in names.iter().zip(ls) {
        let m = common::builder(name, &names, &urls).build()?;
        tokio::spawn(m.clone().serve(l));
        nodes.push(m);
    }
    for n in &nodes {
        for c in n.connections() {
            c.wait_for_connect().await?;
        }
    }
    // back: reports how much time its caller left it.
    nodes[2].register_single(REMAINING, |ctx: CallContext, _| async move {
        Ok(Bytes::from(format!(
            "{:?}",
            ctx.remaining().unwrap_or_default()
        )))
    })?;
    // middle: forwards to back without setting a deadline of its own.
    let to_back = nodes[1].connection("back")?;
    nodes[1].register_single(FORWARD, move |_, _| {
        let to_back = to_back.clone();
        async move { Ok(to_back.request(REMAINING, None).await?) }
    })?;
    // middle: a handler that takes too long, and says when it is cancelled.
    nodes[1].register_single(SLOW, |ctx: CallContext, _| async move {
        let watcher = ctx.clone();
        tokio::spawn(async move {
            watcher.cancelled().await;
            println!("  middle: my caller gave up, the slow handler was cancelled");
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Bytes::from_static(b"too late"))
    })?;

    let middle = nodes[0].connection("middle")?;
    let left = middle
        .request(FORWARD, None)
        .deadline(Duration::from_millis(800))
        .await?;
    println!(
        "front -> middle -> back with an 800 ms deadline: back had {} left",
        String::from_utf8_lossy(&left.unwrap_or_default())
    );

    match middle
        .request(SLOW, None)
        .deadline(Duration::from_millis(200))
        .await
    {
        Err(Error::DeadlineExceeded) => println!("front: the slow call hit its 200 ms deadline"),
        other => println!("unexpected: {other:?}"),
    }
    // Give the cancellation message a moment to be printed before shutting down.
    middle.wait_idle().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
