//! Connecting to the node as an admitted client: the manager, TLS roots, and a connection
//! error a person can act on.

use std::sync::Arc;
use std::time::Duration;

use grid::tls::rustls::pki_types::pem::PemObject;
use grid::tls::rustls::pki_types::CertificateDer;
use grid::tls::rustls::{self, ClientConfig, RootCertStore};
use grid::{Connection, Error, Manager, State};

use crate::args::Args;

/// A manager that dials only the node, connected to it.
pub async fn connect(a: &Args) -> Result<(Manager, Connection), String> {
    let mut b = Manager::builder()
        .local(a.name.clone())
        .peer(a.node.clone(), a.url.clone())
        .token(a.token.clone())
        .as_client()
        .dial_timeout(a.connect)
        // Retry soon after a refusal or a failed dial: a person is waiting.
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(500));
    if a.url.starts_with("wss://") {
        b = b.tls_client(Arc::new(tls(a.ca.as_deref())?));
    }
    let manager = b.build().map_err(|e| e.to_string())?;
    let conn = manager.connection(&a.node).map_err(|e| e.to_string())?;
    // Up, or refused (which retrying does not change), or still failing at the deadline.
    let mut state = conn.watch_state();
    let settled = state.wait_for(|s| match s {
        State::Connected | State::Shutdown => true,
        State::ConnectionError => matches!(conn.last_error(), Some(Error::Rejected(_))),
        _ => false,
    });
    let up = matches!(
        tokio::time::timeout(a.connect, settled).await,
        Ok(Ok(s)) if *s == State::Connected
    );
    if up {
        return Ok((manager, conn));
    }
    let why = conn
        .last_error()
        .map_or_else(|| "no answer".to_owned(), |e| e.to_string());
    manager.shutdown().await;
    Err(format!(
        "could not connect to {} at {}: {why}",
        a.node, a.url
    ))
}

/// TLS settings trusting `ca` (a PEM file), or else the system's roots.
fn tls(ca: Option<&str>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca {path}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--ca {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("--ca {path}: no certificate in it (PEM expected)"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("--ca {path}: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system root rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!(
                    "no usable root certificates on this system ({} errors); give the node's CA with --ca FILE",
                    found.errors.len()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
