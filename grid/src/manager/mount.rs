//! Serving grid on an existing axum server (feature `axum`): a router with one route, the
//! manager's route path, to merge beside the application's own routes.
//!
//! The HTTP checks (path, bearer token) are the listener's; the WebSocket upgrade is answered
//! here and the upgraded connection goes through the same grid handshake.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::listener::{check_upgrade, grid_handshake, Listening};
use super::Manager;
use crate::connection::handshake::framed_stream;
use crate::connection::Role;

impl Manager {
    /// An axum router that serves this manager's peers on its route path (default
    /// `/grid/v1`), to merge into the application's router:
    ///
    /// ```no_run
    /// # async fn run(manager: grid::Manager) -> std::io::Result<()> {
    /// let app = axum::Router::new()
    ///     .route("/health", axum::routing::get(|| async { "ok" }))
    ///     .merge(manager.axum_router());
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    ///
    /// Wrong paths never reach grid (the router does not match them); a missing or refused
    /// bearer token is answered 401 or 403 before the upgrade, as by [`Manager::serve`].
    pub fn axum_router(&self) -> axum::Router {
        let state = Arc::new(Listening::new(
            self.inner.core.clone(),
            self.inner.peers.clone(),
        ));
        let route = self.inner.core.config.route.clone();
        axum::Router::new()
            .route(&route, axum::routing::get(upgrade))
            .with_state(state)
    }

    /// A router that serves this manager's counters ([`Manager::stats`]) in the Prometheus
    /// text format at `path` (e.g. `"/metrics"`), to merge beside your own routes.
    ///
    /// ```no_run
    /// # async fn run(manager: grid::Manager) -> std::io::Result<()> {
    /// let app = manager.axum_router().merge(manager.metrics_router("/metrics"));
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    pub fn metrics_router(&self, path: &str) -> axum::Router {
        let manager = self.clone();
        axum::Router::new().route(
            path,
            axum::routing::get(move || {
                let text = manager.stats().to_prometheus();
                async move {
                    let mut r = answer(StatusCode::OK, text);
                    r.headers_mut().insert(
                        axum::http::header::CONTENT_TYPE,
                        axum::http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    r
                }
            }),
        )
    }
}

fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    let mut r = Response::new(Body::from(text.into()));
    *r.status_mut() = status;
    r
}

fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn upgrade(State(state): State<Arc<Listening>>, mut req: Request) -> Response {
    let headers = req.headers();
    let wants_websocket =
        header(headers, UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let Some(key) = header(headers, SEC_WEBSOCKET_KEY).filter(|_| wants_websocket) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "grid peers connect with a WebSocket upgrade",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    if let Err((status, text)) = check_upgrade(
        &state.core,
        req.uri().path(),
        header(headers, AUTHORIZATION),
    ) {
        return answer(status, text);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let core = state.core.clone();
    core.tasks.spawn(async move {
        let socket = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => return state.refused("(axum)", format!("upgrade failed: {e}")),
        };
        // Checksums: an axum server may sit behind TLS or not; grid cannot tell, so it asks
        // for them (a dialer over TLS then adds them).
        let (reader, writer) = framed_stream(socket, Role::Acceptor, state.core.config.max_frame());
        let timeout = state.core.config.dial_timeout;
        match tokio::time::timeout(timeout, grid_handshake(&state, reader, writer, true)).await {
            Ok(Ok((conn, accepted))) => conn.inner.hand_over(accepted).await,
            Ok(Err(e)) => state.refused("(axum)", e.to_string()),
            Err(_) => state.refused("(axum)", "handshake timed out".into()),
        }
    });
    let mut r = answer(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(UPGRADE, axum::http::HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, axum::http::HeaderValue::from_static("Upgrade"));
    if let Ok(v) = axum::http::HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}
