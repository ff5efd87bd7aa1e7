//! Streaming with backpressure: a fast handler and a slow reader. The handler can run at
//! most the reader's window ahead (in bytes: a message costs its payload plus 64); it
//! waits for credit instead of buffering. Left alone, a window grows to fit the link; this
//! reader caps its own at 256 bytes, four of these small messages.
//!
//! Run with `cargo run -p grid-examples --example streaming`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/logging.rs"]
mod logging;

use std::time::Duration;

use futures::StreamExt;
use grid::{Bytes, HandlerId, StreamCall, StreamHandler};

const TICKS: HandlerId = HandlerId::new(1);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let nodes = common::cluster(&["producer", "consumer"], |m| {
        m.register_stream(
            TICKS,
            StreamHandler::new(|mut call: StreamCall| async move {
                for i in 0..12u32 {
                    // `send` waits here whenever the consumer is its window behind.
                    call.output.send(Bytes::from(i.to_string())).await?;
                    println!(
                        "  producer sent {i:>2}, {} bytes of credit left",
                        call.output.credit()
                    );
                }
                Ok(())
            }),
        )
    })
    .await?;
    let mut ticks = nodes[1]
        .connection("producer")?
        .open_stream(TICKS, None)
        .max_window(256)
        .await?;
    println!("the consumer reads slowly; the producer stays at most 4 ahead:");
    while let Some(tick) = ticks.responses.next().await {
        let tick = tick?;
        tokio::time::sleep(Duration::from_millis(30)).await;
        println!("consumer read {}", String::from_utf8_lossy(&tick));
    }
    println!("done: nothing was lost, nothing was buffered beyond the window");
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
