//! Subroutes: one handler id, many instances behind it (here one per disk), each reached
//! through `conn.subroute(name)`.
//!
//! Run with `cargo run -p grid-examples --example subroutes`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/kv.rs"]
mod kv;
#[path = "common/logging.rs"]
mod logging;

use grid::Error;
use kv::{Entry, KvClient, KvServer, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let nodes = common::cluster(&["client", "server"], |m| {
        if m.local() == "server" {
            for disk in ["disk-1", "disk-2"] {
                m.register_on(disk, KvServer::new(Store::new(disk)))?;
            }
        }
        Ok(())
    })
    .await?;
    let conn = nodes[0].connection("server")?;
    for disk in ["disk-1", "disk-2"] {
        let kv = KvClient::new(conn.subroute(disk));
        println!(
            "{}",
            kv.put(Entry {
                key: "owner".into(),
                value: disk.into()
            })
            .await?
        );
    }
    for disk in ["disk-1", "disk-2"] {
        let owner = KvClient::new(conn.subroute(disk))
            .get("owner".into())
            .await?;
        println!("{disk} says owner = {owner:?}");
    }
    match KvClient::new(conn.subroute("disk-9"))
        .get("owner".into())
        .await
    {
        Err(Error::UnknownHandler { subroute, .. }) => {
            println!("disk-9 is not served: UnknownHandler on {subroute:?}")
        }
        other => println!("unexpected: {other:?}"),
    }
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
