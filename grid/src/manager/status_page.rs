//! The status page (feature `axum`): [`Manager::status_router`] serves this node's status
//! as a self-reloading HTML page and as JSON, and samples each peer's round trip for the
//! page's charts. Nothing of it exists until the router is made: a node without the page
//! keeps no history and runs no sampler.

use std::sync::{Arc, Weak};
use std::time::Instant;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::Response;

use super::{Manager, ManagerInner};
use crate::connection::State;
use crate::status::history::{History, SAMPLE_EVERY};
use crate::status::{html, millis, NodeStatus};

/// How often the page reloads itself, in seconds.
const REFRESH_SECS: u64 = 2;

impl Manager {
    /// A router that serves this node's status page at `path` (e.g. `"/status"`) and the
    /// same data as JSON at `path/json`, to merge beside your own routes. The page is one
    /// HTML document with no script and no external asset that reloads itself every two
    /// seconds: this node, every peer with its state, round trip, reconnects and last error
    /// (and when it happened), a chart of each peer's round trips over the last five
    /// minutes (inline SVG), and every handler's calls, errors and latency percentiles.
    ///
    /// Making the router starts the task that samples the round trips (every two seconds,
    /// until shutdown); without it the node keeps no history. Serving the page reads the
    /// counters the node keeps anyway: a call's path does no work for it.
    ///
    /// ```no_run
    /// # async fn run(manager: grid::Manager) -> std::io::Result<()> {
    /// let app = manager.axum_router().merge(manager.status_router("/status"));
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    pub fn status_router(&self, path: &str) -> axum::Router {
        let history = Arc::new(History::default());
        sample(Arc::downgrade(&self.inner), history.clone());
        let base = path.trim_end_matches('/');
        let json_path = format!("{base}/json");
        let (m, h, link) = (self.clone(), history.clone(), json_path.clone());
        let page = move || {
            let text = html::render(&with_history(&m, &h), REFRESH_SECS, &link);
            async move { answer("text/html; charset=utf-8", text) }
        };
        let m = self.clone();
        let json = move || {
            let text = serde_json::to_string(&with_history(&m, &history))
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            async move { answer("application/json", text) }
        };
        axum::Router::new()
            .route(
                if base.is_empty() { "/" } else { base },
                axum::routing::get(page),
            )
            .route(&json_path, axum::routing::get(json))
    }
}

/// The status now, with the sampled round trips.
fn with_history(m: &Manager, history: &History) -> NodeStatus {
    let mut status = m.status();
    history.fill(Instant::now(), &mut status);
    status
}

/// Records every peer's round trip now, then from a counted task each [`SAMPLE_EVERY`]
/// until shutdown; the task holds the manager weakly, so it does not keep a dropped
/// manager alive.
fn sample(weak: Weak<ManagerInner>, history: Arc<History>) {
    let Some(inner) = weak.upgrade() else {
        return;
    };
    record(&inner, &history);
    let core = inner.core.clone();
    drop(inner);
    core.clone().tasks.spawn(async move {
        let start = tokio::time::Instant::now() + SAMPLE_EVERY;
        let mut tick = tokio::time::interval_at(start, SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = core.shutting_down() => return,
            }
            let Some(inner) = weak.upgrade() else {
                return;
            };
            record(&inner, &history);
        }
    });
}

fn record(inner: &ManagerInner, history: &History) {
    let connections = inner.peers.all();
    let rtts = connections.iter().map(|c| {
        let up = matches!(c.state(), State::Connected | State::Draining);
        let rtt = up.then(|| c.stats().last_ping_rtt).flatten();
        (c.remote(), rtt.map(millis))
    });
    history.record(Instant::now(), rtts);
}

fn answer(content_type: &'static str, text: String) -> Response {
    let mut r = Response::new(Body::from(text));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
