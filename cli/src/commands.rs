//! The subcommands, on a connected node: each prints its results to stdout and returns
//! what went wrong as a message for stderr.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use grid::builtin::NodeClient;
use grid::{CallShape, Connection, Error, HandlerId, HandlerInfo, Listing, Target};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::json;

/// A deadline for streams when none was given: long enough to mean "until it ends".
const STREAM_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// A call's deadline when none was given.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Where calls go and with what deadline.
pub struct Node {
    pub conn: Connection,
    pub subroute: Option<String>,
    pub deadline: Option<Duration>,
}

impl Node {
    fn target(&self) -> Target {
        match &self.subroute {
            Some(s) => self.conn.subroute(s).into(),
            None => (&self.conn).into(),
        }
    }

    /// The built-in service (served without a subroute).
    fn builtin(&self) -> NodeClient {
        NodeClient::new(&self.conn).with_deadline(self.deadline.unwrap_or(CALL_DEADLINE))
    }

    async fn listing(&self) -> Result<Listing, String> {
        self.builtin().services().await.map_err(|e| match e {
            Error::UnknownHandler { .. } => {
                "the node does not serve grid's built-in service (it was turned off with ManagerBuilder::node_service(false))".to_owned()
            }
            e => format!("listing the node's services failed: {e}"),
        })
    }

    /// The handler `method` names, under this node's subroute.
    async fn find(&self, method: &str) -> Result<HandlerInfo, String> {
        let listing = self.listing().await?;
        let here = |h: &&HandlerInfo| h.subroute.as_deref() == self.subroute.as_deref();
        if let Some(id) = parse_id(method) {
            return listing
                .handlers
                .iter()
                .filter(here)
                .find(|h| h.id == id)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{} serves no handler {method}{}",
                        listing.node,
                        self.where_()
                    )
                });
        }
        let named = |h: &HandlerInfo| match (&h.service, &h.method) {
            (Some(s), Some(m)) => Some(format!("{s}.{m}")),
            _ => None,
        };
        if let Some(h) = listing
            .handlers
            .iter()
            .filter(here)
            .find(|h| named(h).as_deref() == Some(method))
        {
            return Ok(h.clone());
        }
        let names: Vec<String> = listing
            .handlers
            .iter()
            .filter(here)
            .filter_map(named)
            .collect();
        let close = closest(method, &names);
        let hint = if close.is_empty() {
            "; `grid-cli list` shows them all".to_owned()
        } else {
            format!("; did you mean {}?", close.join(", "))
        };
        Err(format!(
            "{} has no method {method}{}{hint}",
            listing.node,
            self.where_()
        ))
    }

    fn where_(&self) -> String {
        self.subroute
            .as_ref()
            .map_or_else(String::new, |s| format!(" on subroute {s:?}"))
    }
}

/// `#65537`, `65537` or `0x00010001`.
fn parse_id(s: &str) -> Option<u32> {
    let s = s.strip_prefix('#').unwrap_or(s);
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The names closest to `wanted`, if within a few edits of it (ties: at most three).
pub fn closest(wanted: &str, names: &[String]) -> Vec<String> {
    let lower = wanted.to_lowercase();
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .map(|n| (edit_distance(&lower, &n.to_lowercase()), n))
        .filter(|(d, n)| *d <= (n.len() / 5).max(2))
        .collect();
    scored.sort();
    let best = scored.first().map_or(0, |(d, _)| *d);
    scored
        .into_iter()
        .take_while(|(d, _)| *d == best)
        .take(3)
        .map(|(_, n)| n.clone())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

fn types(h: &HandlerInfo) -> String {
    let t = |t: &Option<String>| t.clone().unwrap_or_else(|| "?".into());
    let typed = h.method.is_some();
    match h.shape {
        _ if !typed => "(bytes; no types known)".into(),
        CallShape::Single => format!("{} -> {}", t(&h.request), t(&h.answer)),
        CallShape::HandlerStream => format!("{} -> stream of {}", t(&h.request), t(&h.output)),
        CallShape::TwoWay => format!(
            "{}, stream of {} -> stream of {}",
            t(&h.request),
            t(&h.input),
            t(&h.output)
        ),
        CallShape::Upload => format!(
            "{}, stream of {} -> {}",
            t(&h.request),
            t(&h.input),
            t(&h.answer)
        ),
        CallShape::Stream => format!("{} -> stream", t(&h.request)),
    }
}

pub async fn list(node: &Node) -> Result<(), String> {
    let listing = node.listing().await?;
    println!(
        "{} serves {} handlers:",
        listing.node,
        listing.handlers.len()
    );
    for h in &listing.handlers {
        println!(
            "  {:<28} {:#010x}  {:<14} {}",
            h.display_name(),
            h.id,
            h.shape.as_str(),
            types(h)
        );
    }
    Ok(())
}

/// What a failed call says, with the type the request should have had when it did not fit.
fn failed(h: &HandlerInfo, e: Error) -> String {
    match (&e, &h.request) {
        (Error::Codec(_), Some(ty)) => format!(
            "{}: the node could not read the request as {ty}: {e}",
            h.display_name()
        ),
        _ => format!("{}: {e}", h.display_name()),
    }
}

fn request(text: &str) -> Result<Bytes, String> {
    Ok(Bytes::from(json::to_msgpack(&json::parse(text)?)))
}

fn print(payload: Option<&[u8]>) -> Result<(), String> {
    let value = match payload {
        None => serde_json::Value::Null,
        Some(b) => json::from_msgpack(b)?,
    };
    println!("{value}");
    Ok(())
}

pub async fn call(node: &Node, method: &str, text: &str) -> Result<(), String> {
    let payload = request(text)?;
    let h = node.find(method).await?;
    if h.shape.is_stream() {
        return Err(format!(
            "{} is a {} method: use `grid-cli stream`",
            h.display_name(),
            h.shape.as_str()
        ));
    }
    let answer = node
        .target()
        .request(HandlerId::new(h.id), payload)
        .deadline(node.deadline.unwrap_or(CALL_DEADLINE))
        .await
        .map_err(|e| failed(&h, e))?;
    print(answer.as_deref())
}

pub async fn stream(node: &Node, method: &str, text: &str) -> Result<(), String> {
    let payload = request(text)?;
    let h = node.find(method).await?;
    if !h.shape.is_stream() {
        return Err(format!(
            "{} is a single call: use `grid-cli call`",
            h.display_name()
        ));
    }
    let opened = node
        .target()
        .open_stream(HandlerId::new(h.id), payload)
        .deadline(node.deadline.unwrap_or(STREAM_DEADLINE))
        .await
        .map_err(|e| failed(&h, e))?;
    let mut responses = opened.responses;
    // Input items from stdin, while the node's items are printed as they come.
    let feed = async {
        let Some(mut requests) = opened.requests else {
            return Ok(());
        };
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut n = 0;
        while let Some(line) = lines.next_line().await.map_err(|e| format!("stdin: {e}"))? {
            n += 1;
            if line.trim().is_empty() {
                continue;
            }
            let item = request(&line).map_err(|e| format!("stdin line {n}: {e}"))?;
            requests
                .send(item)
                .await
                .map_err(|e| format!("{}: sending line {n}: {e}", h.display_name()))?;
        }
        requests
            .finish()
            .await
            .map_err(|e| format!("{}: ending the input: {e}", h.display_name()))
    };
    let read = async {
        while let Some(item) = responses.next().await {
            let item = item.map_err(|e| failed(&h, e))?;
            print(Some(&item))?;
        }
        Ok::<(), String>(())
    };
    let (fed, read) = futures::join!(feed, read);
    read.and(fed)
}

pub async fn ping(node: &Node, count: u32) -> Result<(), String> {
    let client = node.builtin();
    let mut took = Vec::new();
    for i in 1..=count {
        let start = Instant::now();
        client.ping().await.map_err(|e| format!("ping {i}: {e}"))?;
        let t = start.elapsed();
        println!("ping {i}: {:.3} ms", t.as_secs_f64() * 1e3);
        took.push(t);
    }
    let (min, max) = (took.iter().min(), took.iter().max());
    if let (Some(min), Some(max)) = (min, max) {
        let avg = took.iter().sum::<Duration>() / count;
        println!(
            "{count} round trips to {}: min {:.3} ms, avg {:.3} ms, max {:.3} ms",
            node.conn.remote(),
            min.as_secs_f64() * 1e3,
            avg.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

pub async fn status(node: &Node) -> Result<(), String> {
    let s = node
        .builtin()
        .status()
        .await
        .map_err(|e| format!("reading the node's status failed: {e}"))?;
    let up = Duration::from_millis(s.uptime_ms).as_secs();
    let leaving = if s.draining { ", draining" } else { "" };
    println!("{} (instance {}), up {up} s{leaving}", s.node, s.instance);
    println!("peers:");
    for p in &s.peers {
        let rtt = p
            .rtt_ms
            .map_or_else(|| "-".into(), |ms| format!("{ms:.3} ms"));
        let error = match (&p.last_error, p.last_error_ago_ms) {
            (Some(e), Some(ago)) => format!("; last error {:.1} s ago: {e}", ago as f64 / 1e3),
            _ => String::new(),
        };
        println!(
            "  {:<16} {:<16} rtt {rtt:<12} reconnects {}{error}",
            p.peer, p.state, p.reconnects
        );
    }
    println!("handlers:");
    for h in &s.handlers {
        let at = |ms: Option<f64>| ms.map_or_else(|| "-".into(), |ms| format!("<={ms}ms"));
        println!(
            "  {:<28} calls {:<6} errors {:<4} running {:<3} p50 {} p90 {} p99 {}",
            h.name,
            h.calls,
            h.errors,
            h.in_flight,
            at(h.p50_ms),
            at(h.p90_ms),
            at(h.p99_ms)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_closest_first() {
        let names: Vec<String> = ["Kv.get", "Kv.put", "Kv.scan", "Kv.bulk_put"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("Kv.gte", &names), ["Kv.get"]);
        assert_eq!(closest("Kv.pt", &names), ["Kv.put"]);
        assert_eq!(closest("Kv.pet", &names), ["Kv.get", "Kv.put"], "ties");
        assert_eq!(closest("kv.scan", &names), ["Kv.scan"]);
        assert_eq!(closest("Kv.bulkput", &names), ["Kv.bulk_put"]);
        assert!(closest("Storage.disk_info", &names).is_empty());
    }

    #[test]
    fn handler_ids_parse_in_every_written_form() {
        assert_eq!(parse_id("#65537"), Some(65537));
        assert_eq!(parse_id("65537"), Some(65537));
        assert_eq!(parse_id("0x00010001"), Some(65537));
        assert_eq!(parse_id("Kv.get"), None);
    }
}
