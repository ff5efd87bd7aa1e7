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
//! `--rounds N` stops after N rounds (0: run until Ctrl-C or SIGTERM, which shut the node
//! down gracefully: its connections drain first).
//!
//! Each round prints one line per peer, `TIME [me] round N: PEER ok: ...` or `TIME [me]
//! round N: PEER failed: WHY` (TIME is the UTC time of day, to the millisecond), in the
//! order the calls end; `.ci/netns-cluster.sh` reads these lines. `--every MS` and
//! `--ping-every MS` shorten the round and the ping interval (a silent peer is declared dead
//! after two ping intervals).

#[path = "common/kv.rs"]
mod kv;
#[path = "common/load.rs"]
mod load;
#[path = "common/logging.rs"]
mod logging;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grid::{Connection, Manager, State};
use kv::{Entry, KvClient, KvServer, Store};

struct Args {
    name: String,
    listen: String,
    peers: Vec<(String, String)>,
    clients: Vec<String>,
    token: String,
    rounds: u64,
    every: Duration,
    ping_every: Option<Duration>,
    load: bool,
    peers_file: Option<String>,
    peers_every: Duration,
}

const USAGE: &str = "usage: node --name NAME --listen HOST:PORT [--peer NAME=ws://HOST:PORT/grid/v1]... [--peers-file PATH [--peers-every MS]] [--client NAME]... --token TOKEN [--rounds N] [--every MS] [--ping-every MS] [--load]";

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
peer's `from/` entries and prints what it found, one line per peer and round:
  HH:MM:SS.mmm [NAME] round N: PEER ok: PEER stored it for NAME; it holds from/...
  HH:MM:SS.mmm [NAME] round N: PEER failed: why (the call's error, or the connection's)
  HH:MM:SS.mmm [NAME] round N: PEER removed (taken out of the peer file during the round)

Calling it: from another node started with --peer pointing here (each side lists the
other; exactly one of them dials), from Rust with `KvClient::new(manager.connection(\"NAME\")?)`,
from a tool admitted with --client (`grid-cli --as NAME call NODE=URL Kv.get '\"k\"'`),
or from any language that speaks PROTOCOL.md (interop/ has a Python peer).

Options:
  --name NAME          this node's name (peers list it under this name)
  --listen HOST:PORT   where it accepts connections
  --peer NAME=URL      a peer and its URL (repeat for each)
  --peers-file PATH    follow a file listing the peers, one `NAME URL` per line (# starts
                       a comment); peers added to it are connected, peers taken out are
                       drained and forgotten, while the node runs (grid::FilePeers)
  --peers-every MS     how often the file is checked for a change (default 1000)
  --client NAME        admit a client that dials in under NAME with the same token, such
                       as grid-cli (repeat for each); it is served, never dialled or
                       visited by the rounds
  --token TOKEN        the bearer token every node of the cluster shares
  --rounds N           stop after N rounds (default 0: run until Ctrl-C)
  --every MS           milliseconds between rounds (default 2000)
  --ping-every MS      the ping interval; a peer silent for two of them is declared dead
                       and redialled (default: the library's, 10 s)
  --load               also keep every peer busy (get, put, a bulk_put stream now and
                       then), and print the outcomes, counted, when stopping:
                       HH:MM:SS.mmm [NAME] load: ok=N not_executed=N ... (common/load.rs)
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
        clients: Vec::new(),
        token: String::new(),
        rounds: 0,
        every: Duration::from_secs(2),
        ping_every: None,
        load: false,
        peers_file: None,
        peers_every: Duration::from_secs(1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{HELP}\n\n{USAGE}");
            std::process::exit(0);
        }
        if flag == "--load" {
            a.load = true;
            continue;
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
            "--every" => a.every = millis(&flag, &value),
            "--ping-every" => a.ping_every = Some(millis(&flag, &value)),
            "--client" => a.clients.push(value),
            "--peers-file" => a.peers_file = Some(value),
            "--peers-every" => a.peers_every = millis(&flag, &value),
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

fn millis(flag: &str, value: &str) -> Duration {
    match value.parse() {
        Ok(ms) if ms > 0 => Duration::from_millis(ms),
        _ => usage(&format!("{flag} takes a number of milliseconds (above 0)")),
    }
}

/// The UTC time of day, `HH:MM:SS.mmm`, that starts every line the node prints.
fn now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Calls every peer at once, so that one slow or lost peer does not hold up the others,
/// and prints a line for each as its calls end.
async fn round(manager: &Manager, n: u64) {
    let me = manager.local();
    let peers = manager.connections().filter(|c| !c.is_client());
    let visits = peers.map(|conn| async move {
        let peer = conn.remote();
        match visit(&conn, me, n).await {
            Ok(report) => println!("{} [{me}] round {n}: {peer} ok: {report}", now()),
            // Removed from the peers during the round: not a failure, it left.
            Err(_) if manager.connection(peer).is_err() => {
                println!("{} [{me}] round {n}: {peer} removed", now());
            }
            Err(why) => println!("{} [{me}] round {n}: {peer} failed: {why}", now()),
        }
    });
    futures::future::join_all(visits).await;
}

/// Puts `from/ME` on the peer and scans what it holds under `from/`.
async fn visit(conn: &Connection, me: &str, n: u64) -> Result<String, String> {
    // The connection's last error and how long ago it was (it may predate the current
    // connection), unless it says what `said` already does.
    let why = |conn: &Connection, said: &str| match conn.last_error_age() {
        Some((e, age)) if e.to_string() != said => {
            format!(" (last error {:.1}s ago: {e})", age.as_secs_f64())
        }
        _ => String::new(),
    };
    if conn.state() != State::Connected {
        return Err(format!(
            "not connected, {:?}{}",
            conn.state(),
            why(conn, "")
        ));
    }
    let kv = KvClient::new(conn.clone()).with_deadline(Duration::from_secs(2));
    let put = kv
        .put(Entry {
            key: format!("from/{me}"),
            value: format!("round {n}"),
        })
        .await;
    let answer = put.map_err(|e| format!("{e}{}", why(conn, &e.to_string())))?;
    let mut seen = Vec::new();
    if let Ok(mut scan) = kv.scan("from/".into()).await {
        while let Some(Ok(e)) = scan.recv().await {
            seen.push(format!("{}={}", e.key, e.value));
        }
    }
    Ok(format!("{answer}; it holds {}", seen.join(", ")))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let a = args();
    let mut builder = Manager::builder().local(&a.name).token(a.token.clone());
    if let Some(ping) = a.ping_every {
        builder = builder.ping_interval(ping);
    }
    for (peer, url) in &a.peers {
        builder = builder.peer(peer.clone(), url.clone());
    }
    for client in &a.clients {
        builder = builder.client(client.clone());
    }
    let manager = builder.build()?;
    manager.register(KvServer::new(Store::new(&a.name)))?;
    if let Some(path) = &a.peers_file {
        manager.follow_peers(grid::FilePeers::new(path).every(a.peers_every));
    }
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    println!(
        "{} [{}] listening on ws://{}/grid/v1",
        now(),
        a.name,
        listener.local_addr()?
    );
    tokio::spawn(manager.clone().serve(listener));
    if a.peers_file.is_none() {
        // (With a peer file, the peers come and go: there is no "all" to wait for.)
        tokio::spawn(report_connected(manager.clone()));
    }
    let (stop_load, stopping) = tokio::sync::watch::channel(false);
    let counts = std::sync::Arc::new(load::Counts::default());
    let loading = a.load.then(|| {
        let (name, shown, retried) = (a.name.clone(), counts.clone(), manager.clone());
        let mut every_second = stopping.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = every_second.changed() => return,
                }
                println!("{} [{name}] load: {}", now(), shown.line(&retried));
            }
        });
        tokio::spawn(load::run(manager.clone(), counts.clone(), stopping))
    });
    // Ctrl-C or SIGTERM (how process managers and Kubernetes stop a node): a graceful
    // shutdown, which drains the connections first.
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut n = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(a.every) => {}
            _ = &mut stop => break,
        }
        n += 1;
        round(&manager, n).await;
        if a.rounds > 0 && n >= a.rounds {
            break;
        }
    }
    if let Some(loading) = loading {
        // No new calls from here; those under way end first.
        stop_load.send_replace(true);
        let _ = loading.await;
        println!("{} [{}] load: {}", now(), a.name, counts.line(&manager));
    }
    println!("{} [{}] draining", now(), a.name);
    manager.shutdown().await;
    println!("{} [{}] shut down", now(), a.name);
    Ok(())
}

/// Prints one line once every peer (not clients) is connected.
async fn report_connected(manager: Manager) {
    let peers: Vec<Connection> = manager.connections().filter(|c| !c.is_client()).collect();
    for c in &peers {
        if c.wait_for_connect().await.is_err() {
            return;
        }
    }
    println!(
        "{} [{}] connected to all {} peers",
        now(),
        manager.local(),
        peers.len()
    );
}

/// Resolves at Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
