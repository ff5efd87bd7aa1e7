//! The dialing side of the handshake: TCP connect, WebSocket upgrade with the bearer token,
//! then the connect message and its answer.

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::{self};
use uuid::Uuid;

#[cfg(feature = "tls")]
use super::handshake::framed_stream;
use super::handshake::{close_after, framed, recv_message, send_message, Accepted};
use super::websocket::Role;
use super::websocket::{FrameReader, FrameWriter};
use super::ConnInner;
use crate::codec::handshake::{
    decode, encode, judge_response, ConnectRequest, ConnectResponse, Terms, Verdict,
};
use crate::codec::{Message, Op};
use crate::core::wall_clock_ms;
use crate::error::{Error, Result};

/// Dials the peer and runs the handshake, within the dial timeout.
pub(crate) async fn dial(inner: &ConnInner) -> Result<Accepted> {
    let timeout = inner.core.config.dial_timeout;
    tokio::time::timeout(timeout, dial_inner(inner))
        .await
        .map_err(|_| {
            Error::Unreachable(format!("no answer within the dial timeout of {timeout:?}"))
        })?
}

async fn dial_inner(inner: &ConnInner) -> Result<Accepted> {
    let core = &inner.core;
    let mut request = inner
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Config(format!("bad peer url {:?}: {e}", inner.url)))?;
    let token = (core.token_provider)(&inner.remote);
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::Config("the auth token is not a valid HTTP header value".into()))?;
    request.headers_mut().insert(AUTHORIZATION, bearer);
    let uri = request.uri();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });

    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::Unreachable(format!("{}: {e}", inner.url)))?;
    super::configure_socket(&tcp);
    let max_frame = core.config.max_frame();
    let (mut reader, mut writer) = if secure {
        tls_upgrade(core, request, tcp, &host).await?
    } else {
        let (ws, _) = tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(upgrade_error)?;
        framed(ws.into_inner(), Role::Dialer, max_frame)
    };
    // TLS already protects the bytes: this side asks for checksums only without it.
    let asks_checksums = !secure;
    match connect(inner, &mut reader, &mut writer, token, asks_checksums).await {
        Ok((instance, peer)) => Ok(Accepted {
            reader,
            writer,
            instance,
            checksum: peer.agree_checksums(asks_checksums),
            peer,
        }),
        Err(e) => {
            close_after(&mut writer, &e).await;
            Err(e)
        }
    }
}

/// Sends the Connect and reads the answer: the acceptor's instance id and terms.
async fn connect(
    inner: &ConnInner,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    token: String,
    asks_checksums: bool,
) -> Result<(Uuid, Terms)> {
    let core = &inner.core;
    let mut hello = Message::new(Op::Connect);
    hello.payload = Some(
        encode(&ConnectRequest {
            host: core.local.to_string(),
            instance: core.instance.to_string(),
            clock_ms: wall_clock_ms(),
            token,
            terms: core.config.announced(asks_checksums),
        })
        .into(),
    );
    send_message(writer, &hello).await?;
    let answer = recv_message(reader, core.config.limits()).await?;
    if answer.op != Op::ConnectResponse {
        return Err(Error::Protocol(format!(
            "expected ConnectResponse, got {:?}",
            answer.op
        )));
    }
    let resp: ConnectResponse =
        decode(answer.payload.as_deref().unwrap_or_default()).map_err(Error::Protocol)?;
    judge_response(&resp, &inner.remote, inner.url.as_str()).map_err(|v| match v {
        Verdict::Refused(why) => Error::Rejected(why),
        Verdict::Broken(why) => Error::Protocol(why),
    })
}

/// The TLS handshake, then the WebSocket upgrade over it.
#[cfg(feature = "tls")]
async fn tls_upgrade(
    core: &crate::core::Core,
    request: tungstenite::handshake::client::Request,
    tcp: TcpStream,
    host: &str,
) -> Result<(FrameReader, FrameWriter)> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let config = core
        .tls
        .client
        .clone()
        .ok_or_else(|| Error::Config("wss:// peers need ManagerBuilder::tls_client".into()))?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| Error::Config(format!("{host:?} is not a valid TLS server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Unreachable(format!("TLS handshake with {host} failed: {e}")))?;
    let (ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .map_err(upgrade_error)?;
    Ok(framed_stream(
        ws.into_inner(),
        Role::Dialer,
        core.config.max_frame(),
    ))
}

#[cfg(not(feature = "tls"))]
async fn tls_upgrade(
    _core: &crate::core::Core,
    _request: tungstenite::handshake::client::Request,
    _tcp: TcpStream,
    _host: &str,
) -> Result<(FrameReader, FrameWriter)> {
    Err(Error::Config(
        "wss:// peers need grid's `tls` feature".into(),
    ))
}

fn upgrade_error(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            Error::Rejected(format!("HTTP {}: {}", resp.status(), body.trim()))
        }
        other => Error::Unreachable(format!("WebSocket upgrade failed: {other}")),
    }
}
