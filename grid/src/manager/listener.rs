//! The accepting side: HTTP checks before the upgrade, then the handshake, then the socket
//! goes to the peer's connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::http::StatusCode;
use uuid::Uuid;

use crate::codec::handshake::{
    decode, encode, judge_connect, refusal, ConnectRequest, ConnectResponse, Terms,
};
use crate::codec::{Message, Op};
use crate::connection::handshake::{close_after, framed, recv_message, send_message};
use crate::connection::Role;
use crate::connection::{Accepted, Connection, FrameReader, FrameWriter};

use super::peers::Peers;
use crate::core::{wall_clock_ms, Core};
use crate::error::{Error, Result};

pub(crate) struct Listening {
    pub(crate) core: Arc<Core>,
    peers: Arc<Peers>,
    last_refusal: Mutex<String>,
}

pub(super) async fn serve(core: Arc<Core>, peers: Arc<Peers>, listener: TcpListener) -> Result<()> {
    let state = Arc::new(Listening::new(core.clone(), peers));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = core.starts_leaving() => return Ok(()),
        };
        match accepted {
            Ok((tcp, addr)) => {
                core.tasks.spawn(accept_one(state.clone(), tcp, addr));
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_one(state: Arc<Listening>, tcp: TcpStream, addr: SocketAddr) {
    let core = &state.core;
    crate::connection::configure_socket(&tcp);
    let handshake = tokio::time::timeout(core.config.dial_timeout, handshake(&state, tcp)).await;
    let refusal = match handshake {
        Ok(Ok((conn, accepted))) => {
            conn.inner.hand_over(accepted).await;
            return;
        }
        // This node refused it: the reason as sent, not as a dialer would read it
        // ("refused by the remote").
        Ok(Err(Error::Rejected(why))) => why,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "handshake timed out".to_owned(),
    };
    state.refused(&addr.to_string(), refusal);
}

impl Listening {
    pub(crate) fn new(core: Arc<Core>, peers: Arc<Peers>) -> Self {
        Self {
            core,
            peers,
            last_refusal: Mutex::new(String::new()),
        }
    }

    /// Logs a refusal: a warning the first time, quietly while the same one repeats.
    pub(crate) fn refused(&self, addr: &str, refusal: String) {
        let core = &self.core;
        let mut last = self.last_refusal.lock().unwrap_or_else(|e| e.into_inner());
        if *last != refusal {
            tracing::warn!(local = %core.local, %addr, reason = %refusal, "refused an incoming connection");
            *last = refusal;
        } else {
            tracing::debug!(local = %core.local, %addr, reason = %refusal, "refused an incoming connection");
        }
    }
}

fn http_refusal(status: StatusCode, text: String) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(text));
    *r.status_mut() = status;
    r
}

#[allow(clippy::result_large_err)] // the callback type is fixed by tungstenite
async fn handshake(state: &Listening, tcp: TcpStream) -> Result<(Connection, Accepted)> {
    let core = &state.core;
    let check_http = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match check_upgrade(core, req.uri().path(), auth) {
            Ok(()) => Ok(resp),
            Err((status, text)) => Err(http_refusal(status, text)),
        }
    };
    let max_frame = core.config.max_frame();
    let refused =
        |e: tokio_tungstenite::tungstenite::Error| Error::Rejected(format!("upgrade refused: {e}"));
    #[cfg(feature = "tls")]
    let tls = core.tls.server.clone();
    #[cfg(not(feature = "tls"))]
    let tls: Option<std::convert::Infallible> = None;
    // TLS already protects the bytes: no checksums then.
    let checksum = tls.is_none();
    let (reader, writer) = match tls {
        None => {
            let ws = tokio_tungstenite::accept_hdr_async(tcp, check_http)
                .await
                .map_err(refused)?;
            framed(ws.into_inner(), Role::Acceptor, max_frame)
        }
        #[cfg(feature = "tls")]
        Some(config) => {
            let stream = tokio_rustls::TlsAcceptor::from(config)
                .accept(tcp)
                .await
                .map_err(|e| Error::Rejected(format!("TLS handshake failed: {e}")))?;
            let ws = tokio_tungstenite::accept_hdr_async(stream, check_http)
                .await
                .map_err(refused)?;
            crate::connection::handshake::framed_stream(ws.into_inner(), Role::Acceptor, max_frame)
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    };
    grid_handshake(state, reader, writer, checksum).await
}

/// The checks made on the HTTP upgrade request, before any upgrade: the route path and
/// the bearer token. `Err` carries the HTTP status and the reason to answer with.
pub(crate) fn check_upgrade(
    core: &Core,
    path: &str,
    authorization: Option<&str>,
) -> Result<(), (StatusCode, String)> {
    if core.is_leaving() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, core.shutdown_reason()));
    }
    let route = core.config.route.as_str();
    if path != route {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no grid endpoint at {path:?}; peers connect to {route:?}"),
        ));
    }
    match authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        None => Err((
            StatusCode::UNAUTHORIZED,
            "missing bearer token in the Authorization header".into(),
        )),
        Some(token) => (core.token_validator)(token)
            .map_err(|reason| (StatusCode::FORBIDDEN, format!("token refused: {reason}"))),
    }
}

/// The grid handshake on an upgraded socket: read Connect, check it, answer, and name the
/// connection the socket belongs to. A refused or broken handshake ends with a close frame
/// saying why.
pub(crate) async fn grid_handshake(
    state: &Listening,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    checksum: bool,
) -> Result<(Connection, Accepted)> {
    match answer_connect(state, &mut reader, &mut writer, checksum).await {
        Ok((conn, instance, peer)) => Ok((
            conn,
            Accepted {
                reader,
                writer,
                instance,
                checksum: peer.agree_checksums(checksum),
                peer,
            },
        )),
        Err(e) => {
            close_after(&mut writer, &e).await;
            Err(e)
        }
    }
}

/// Reads the Connect and answers it. `checksum`: whether this side asks for checksums (its
/// transport is not TLS, as far as it can tell).
async fn answer_connect(
    state: &Listening,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    checksum: bool,
) -> Result<(Connection, Uuid, Terms)> {
    let core = &state.core;
    let hello = recv_message(reader, core.config.limits()).await?;
    if hello.op != Op::Connect {
        return Err(Error::Protocol(format!(
            "expected Connect, got {:?}",
            hello.op
        )));
    }
    let request: ConnectRequest =
        decode(hello.payload.as_deref().unwrap_or_default()).map_err(Error::Protocol)?;
    let verdict = check_connect(state, &request);
    let mut answer = Message::new(Op::ConnectResponse);
    answer.payload = Some(
        encode(&ConnectResponse {
            accepted: verdict.is_ok(),
            reason: verdict.as_ref().err().cloned().unwrap_or_default(),
            host: core.local.to_string(),
            instance: core.instance.to_string(),
            clock_ms: wall_clock_ms(),
            terms: core.config.announced(checksum),
        })
        .into(),
    );
    send_message(writer, &answer).await?;
    let (conn, instance) =
        verdict.map_err(|reason| Error::Rejected(refusal(&request.host, &reason)))?;
    Ok((conn, instance, request.terms))
}

fn check_connect(state: &Listening, req: &ConnectRequest) -> Result<(Connection, Uuid), String> {
    let core = &state.core;
    let conn = state.peers.get(&req.host).ok_or_else(|| {
        format!(
            "unknown host {:?}: it is not in {}'s peer list (ManagerBuilder::peer, Manager::add_peer), nor admitted as a client (ManagerBuilder::client)",
            req.host, core.local
        )
    })?;
    if conn.is_dialer() {
        return Err(format!(
            "{} dials {}, not the other way round; do both nodes use the same names?",
            core.local, req.host
        ));
    }
    (core.token_validator)(&req.token).map_err(|r| format!("token refused: {r}"))?;
    let instance = judge_connect(req, wall_clock_ms(), core.config.max_clock_skew)?;
    Ok((conn, instance))
}
