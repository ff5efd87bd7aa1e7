//! TLS for the tests: a certificate made at test time, and a TLS-terminating proxy.

use std::sync::Arc;

use grid::tls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use grid::tls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpListener;

/// A certificate's server settings, and client settings that trust it.
pub struct Pki {
    /// Serves the certificate.
    pub server: Arc<ServerConfig>,
    /// Trusts only that certificate.
    pub client: Arc<ClientConfig>,
    /// The certificate, PEM-encoded (for tools that read a CA file).
    pub cert_pem: String,
}

/// A self-signed certificate for `localhost`, and client settings that trust only it.
pub fn pki() -> Pki {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .expect("server config");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Pki {
        server: Arc::new(server),
        client: Arc::new(client),
        cert_pem: certified.cert.pem(),
    }
}

/// A TLS-terminating proxy in front of `target`: TLS with `server` on the outside, plain
/// TCP to the target. Returns its port.
pub async fn tls_terminating_proxy(server: Arc<ServerConfig>, target: std::net::SocketAddr) -> u16 {
    let outside = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = outside.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = outside.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}
