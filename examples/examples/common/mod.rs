//! What the examples share: a small cluster of managers on loopback.

#![allow(dead_code)] // each example uses a part

use std::time::Duration;

use grid::{Manager, ManagerBuilder};
use tokio::net::TcpListener;

/// The token every example node uses.
pub const TOKEN: &str = "example-secret";

/// Listeners on ephemeral loopback ports, and the URL of each.
pub async fn listeners(n: usize) -> std::io::Result<(Vec<TcpListener>, Vec<String>)> {
    let mut ls = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!("ws://{}/grid/v1", l.local_addr()?));
        ls.push(l);
    }
    Ok((ls, urls))
}

/// A builder for `name` that knows every node of `names` at `urls`.
pub fn builder(name: &str, names: &[&str], urls: &[String]) -> ManagerBuilder {
    let mut b = Manager::builder()
        .local(name)
        .token(TOKEN)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500));
    for (peer, url) in names.iter().zip(urls) {
        b = b.peer(*peer, url.clone());
    }
    b
}

/// Starts `names.len()` managers on loopback, each configured by `setup` before serving.
pub async fn cluster(
    names: &[&str],
    setup: impl Fn(&Manager) -> Result<(), grid::Error>,
) -> Result<Vec<Manager>, Box<dyn std::error::Error>> {
    let (ls, urls) = listeners(names.len()).await?;
    let mut managers = Vec::new();
    for (name, l) in names.iter().zip(ls) {
        let m = builder(name, names, &urls).build()?;
        setup(&m)?;
        tokio::spawn(m.clone().serve(l));
        managers.push(m);
    }
    for m in &managers {
        for c in m.connections() {
            tokio::time::timeout(Duration::from_secs(10), c.wait_for_connect()).await??;
        }
    }
    Ok(managers)
}
