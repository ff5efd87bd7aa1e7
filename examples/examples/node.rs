//! One grid node as its own process, serving the key-value service of the `cluster` demo,
//! so that three terminals (or three machines) form a cluster:
//!
//! ```text
//! cargo run -p grid-examples --example node -- --name a --listen 127.0.0.1:7001 \
//!     --peer b=ws://127.0.0.1:7002/grid/v1 --peer c=ws://127.0.0.1:7003/grid/v1 --token s3cret
//! cargo run -p grid-examples --example node -- --name b --listen 127.0.0.1:7002 \
//!     --peer a=ws://127.0.0.1:7001/grid/v1 --peer c=ws://127.0.0.1:7003/grid/v1 --token s3cret
//! cargo run -p grid-examples --example node -- --name c --listen 127.0.0.1:7003 \
//!     --peer a=ws://127.0.0.1:7001/grid/v1 --peer b=ws://127.0.0.1:7002/grid/v1 --token s3cret
//! ```
//!
//! Every two seconds each node writes a key on every connected peer and reads back what the
//! peer stored from the others; stop one and watch the others report it and reconnect.
//! `--rounds N` stops after N rounds (0: run until Ctrl-C).

#[path = "common/kv.rs"]
mod kv;
#[path = "common/logging.rs"]
mod logging;

use std::time::Duration;

use grid::{Manager, State};
use kv::{Entry, KvClient, KvServer, Store};

struct Args {
    name: String,
    listen: String,
    peers: Vec<(String, String)>,
    token: String,
    rounds: u64,
}

const USAGE: &str = "usage: node --name NAME --listen HOST:PORT [--peer NAME=ws://HOST:PORT/grid/v1]... --token TOKEN [--rounds N]";

const HELP: &str = "\
A grid node: it serves a key-value service to its peers and calls theirs.

What it serves, on ws://HOST:PORT/grid/v1 (bearer token TOKEN), to the peers it lists:
  the typed service Kv (service id 10, examples/examples/common/kv.rs):
    get(key: String) -> Option<String>
    put(entry: Entry { key, value }) -> String          who stored it, for whom
    scan(prefix: String) -> stream of Entry             every entry under the prefix
    bulk_put(source: String, input: stream of Entry)    stores each, streams the count
        -> stream of u64
What it does: every two seconds it puts `from/NAME` on every connected peer, scans the
peer's `from/` entries and prints what it found (or why the peer is not connected).

Calling it: from another node started with --peer pointing here (each side lists the
other; exactly one of them dials), from Rust with `KvClient::new(manager.connection(\"NAME\")?)`,
or from any language that speaks PROTOCOL.md (interop/ has a Python peer).

Options:
  --name NAME          this node's name (peers list it under this name)
  --listen HOST:PORT   where it accepts connections
  --peer NAME=URL      a peer and its URL (repeat for each)
  --token TOKEN        the bearer token every node of the cluster shares
  --rounds N           stop after N rounds (default 0: run until Ctrl-C)
Logging: RUST_LOG=grid=info shows connects and losses (default: warnings only).";

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\n{USAGE}\n(node --help says more)");
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        name: String::new(),
        listen: String::new(),
        peers: Vec::new(),
        token: String::new(),
        rounds: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{HELP}\n\n{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--name" => a.name = value,
            "--listen" => a.listen = value,
            "--token" => a.token = value,
            "--rounds" => {
                a.rounds = value
                    .parse()
                    .unwrap_or_else(|_| usage("--rounds takes a number"))
            }
            "--peer" => match value.split_once('=') {
                Some((n, u)) => a.peers.push((n.to_owned(), u.to_owned())),
                None => usage("--peer takes NAME=URL"),
            },
            other => usage(&format!("unknown option {other}")),
        }
    }
    if a.name.is_empty() || a.listen.is_empty() || a.token.is_empty() {
        usage("--name, --listen and --token are required");
    }
    a
}

async fn round(manager: &Manager, n: u64) {
    for conn in manager.connections() {
        let peer = conn.remote().to_owned();
        if conn.state() != State::Connected {
            println!(
                "[{}] {peer}: {:?} ({})",
                manager.local(),
                conn.state(),
                conn.last_error().map(|e| e.to_string()).unwrap_or_default()
            );
            continue;
        }
        let kv = KvClient::new(conn).with_deadline(Duration::from_secs(2));
        let key = format!("from/{}", manager.local());
        let put = kv
            .put(Entry {
                key,
                value: format!("round {n}"),
            })
            .await;
        let mut seen = Vec::new();
        if let Ok(mut scan) = kv.scan("from/".into()).await {
            while let Some(Ok(e)) = scan.recv().await {
                seen.push(format!("{}={}", e.key, e.value));
            }
        }
        match put {
            Ok(answer) => println!(
                "[{}] {peer}: {answer}; it holds {}",
                manager.local(),
                seen.join(", ")
            ),
            Err(e) => println!("[{}] {peer}: {e}", manager.local()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let a = args();
    let mut builder = Manager::builder().local(&a.name).token(a.token.clone());
    for (peer, url) in &a.peers {
        builder = builder.peer(peer.clone(), url.clone());
    }
    let manager = builder.build()?;
    manager.register(KvServer::new(Store::new(&a.name)))?;
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    println!(
        "[{}] listening on ws://{}/grid/v1",
        a.name,
        listener.local_addr()?
    );
    tokio::spawn(manager.clone().serve(listener));
    let mut n = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        n += 1;
        round(&manager, n).await;
        if a.rounds > 0 && n >= a.rounds {
            break;
        }
    }
    manager.shutdown().await;
    println!("[{}] shut down", a.name);
    Ok(())
}
