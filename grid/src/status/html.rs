//! The status page as HTML: one self-contained document (no script, no external asset)
//! that reloads itself, with a table of peers, a round-trip chart per peer drawn as inline
//! SVG, and a table of handlers. Elements carry `data-` attributes and classes a test
//! (or a scraper) can find them by.

use std::fmt::Write as _;

use super::{NodeStatus, PeerStatus, RttSample};

/// The chart's size, in pixels.
const CHART_W: f64 = 240.0;
const CHART_H: f64 = 40.0;

/// The page for `status`, reloading itself every `refresh_secs`; `json` is the address
/// of the same data as JSON.
pub(crate) fn render(status: &NodeStatus, refresh_secs: u64, json: &str) -> String {
    let mut h = String::with_capacity(8192);
    let node = escape(&status.node);
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_secs}">
<title>grid · {node}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.name {{ white-space: nowrap; }}
.connected {{ color: #176f2c; }} .connection_error {{ color: #b3261e; }}
.connecting, .unconnected, .draining {{ color: #8a6100; }} .shutdown {{ color: #666; }}
svg {{ background: #f6f6f6; }} polyline {{ fill: none; stroke: #1f5fbf; stroke-width: 1.5; }}
small {{ color: #666; }}
</style></head>
<body data-node="{node}">
<h1>{node}</h1>
<p><small>instance {instance} · up {up}{leaving} · refreshes every {refresh_secs} s ·
<a href="{json}">JSON</a></small></p>
<h2>Peers</h2>
<table id="peers"><tr><th>peer</th><th>state</th><th>round trip</th><th>last minutes</th>
<th>reconnects</th><th>calls out / in</th><th>last error</th></tr>
"#,
        instance = escape(&status.instance),
        up = duration(status.uptime_ms),
        leaving = if status.draining {
            " · <span class=\"draining\">draining: shutting down</span>"
        } else {
            ""
        },
        json = escape(json),
    );
    for p in &status.peers {
        peer_row(&mut h, p);
    }
    h.push_str(
        "</table>\n<h2>Handlers</h2>\n<table id=\"handlers\"><tr><th>handler</th><th>id</th>\
         <th>calls</th><th>running</th><th>errors</th><th>cancelled</th><th>p50</th>\
         <th>p90</th><th>p99</th></tr>\n",
    );
    for x in &status.handlers {
        let _ = writeln!(
            h,
            r#"<tr class="handler" data-handler="{name}"><td class="name">{name}</td><td class="num">{id:#010x}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            x.calls,
            x.in_flight,
            x.errors,
            x.cancelled,
            bound(x.p50_ms, x.calls),
            bound(x.p90_ms, x.calls),
            bound(x.p99_ms, x.calls),
            name = escape(&x.name),
            id = x.id,
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

fn peer_row(h: &mut String, p: &PeerStatus) {
    let error = match (&p.last_error, p.last_error_ago_ms) {
        (Some(e), Some(ago)) => format!("{} <small>({} ago)</small>", escape(e), duration(ago)),
        (Some(e), None) => escape(e),
        _ => "—".into(),
    };
    let _ = writeln!(
        h,
        r#"<tr class="peer" data-peer="{name}" data-state="{state}"><td class="name">{name}{kind}</td><td class="state {state}">{state}</td><td class="num">{rtt}</td><td>{chart}</td><td class="num">{}</td><td class="num">{} / {}</td><td>{error}</td></tr>"#,
        p.reconnects,
        p.in_flight_calls,
        p.in_flight_handlers,
        name = escape(&p.peer),
        kind = if p.client {
            " <small>client</small>"
        } else {
            ""
        },
        state = escape(&p.state),
        rtt = p
            .rtt_ms
            .map_or_else(|| "—".into(), |ms| format!("{ms:.2} ms")),
        chart = chart(&p.peer, &p.rtt_history),
    );
}

/// A line of the round trips over time (oldest left), scaled to the largest; gaps where
/// the peer was not connected.
fn chart(peer: &str, samples: &[RttSample]) -> String {
    let span = samples.iter().map(|s| s.ago_ms).max().unwrap_or(0).max(1) as f64;
    let top = samples
        .iter()
        .filter_map(|s| s.rtt_ms)
        .fold(0.0_f64, f64::max);
    let mut lines = Vec::new();
    let mut points = String::new();
    for s in samples {
        match s.rtt_ms {
            Some(ms) => {
                let x = CHART_W * (1.0 - s.ago_ms as f64 / span);
                let y = CHART_H - 2.0 - (CHART_H - 4.0) * ms / top.max(f64::MIN_POSITIVE);
                let _ = write!(points, "{x:.1},{y:.1} ");
            }
            None if !points.is_empty() => lines.push(std::mem::take(&mut points)),
            None => {}
        }
    }
    if !points.is_empty() {
        lines.push(points);
    }
    let mut svg = format!(
        r#"<svg class="rtt-chart" data-peer="{}" data-samples="{}" width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}" role="img"><title>round trips over the last {}; highest {:.2} ms</title>"#,
        escape(peer),
        samples.len(),
        duration(span as u64),
        top
    );
    for l in lines {
        let _ = write!(svg, r#"<polyline points="{}"/>"#, l.trim_end());
    }
    svg.push_str("</svg>");
    svg
}

fn bound(ms: Option<f64>, calls: u64) -> String {
    match ms {
        Some(ms) => format!("≤ {ms} ms"),
        None if calls > 0 => "> 10 s".into(),
        None => "—".into(),
    }
}

fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=119_999 => format!("{} s", ms / 1000),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

/// `s` with the characters HTML gives meaning to escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{HandlerStatus, PeerStatus};

    fn peer(name: &str, state: &str, history: Vec<RttSample>) -> PeerStatus {
        PeerStatus {
            peer: name.into(),
            state: state.into(),
            dialer: false,
            client: false,
            rtt_ms: Some(1.25),
            reconnects: 2,
            remote_restarts: 0,
            in_flight_calls: 0,
            in_flight_handlers: 0,
            last_error: Some("the peer <closed> the connection".into()),
            last_error_ago_ms: Some(65_000),
            rtt_history: history,
        }
    }

    #[test]
    fn the_page_has_a_row_and_a_chart_per_peer_and_escapes_what_it_shows() {
        let samples = vec![
            RttSample {
                ago_ms: 4000,
                rtt_ms: Some(1.0),
            },
            RttSample {
                ago_ms: 2000,
                rtt_ms: None,
            },
            RttSample {
                ago_ms: 0,
                rtt_ms: Some(2.0),
            },
        ];
        let status = NodeStatus {
            node: "a&b".into(),
            instance: "i".into(),
            uptime_ms: 3_600_000,
            draining: false,
            peers: vec![
                peer("p1", "connected", samples),
                peer("p2", "connection_error", vec![]),
            ],
            handlers: vec![HandlerStatus {
                name: "Kv.get".into(),
                id: 0x000a_0001,
                calls: 3,
                in_flight: 0,
                errors: 1,
                cancelled: 0,
                p50_ms: Some(5.0),
                p90_ms: Some(5.0),
                p99_ms: None,
            }],
        };
        let page = render(&status, 2, "/status/json");
        assert!(page.contains(r#"<meta http-equiv="refresh" content="2">"#));
        assert!(page.contains("<h1>a&amp;b</h1>"));
        assert!(page.contains(r#"data-peer="p1" data-state="connected""#));
        assert!(page.contains(r#"data-peer="p2" data-state="connection_error""#));
        assert!(page.contains("the peer &lt;closed&gt; the connection <small>(65 s ago)</small>"));
        // Two lines: the gap where p1 was not connected splits it.
        assert!(
            page.contains(r#"<polyline points="0.0,20.0"/><polyline points="240.0,2.0"/>"#),
            "{page}"
        );
        assert!(page.contains(r#"data-samples="0""#), "p2's empty chart");
        assert!(page.contains("≤ 5 ms") && page.contains("> 10 s"));
        assert!(!page.contains("<script"), "no script");
    }
}
