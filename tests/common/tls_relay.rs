//! An HTTPS front for a plain-HTTP loopback server. `azure_identity` refuses an authority host
//! that is not `https`, so the client-secret credential's real code can reach the simulator's
//! token endpoint only through TLS. The certificate (tests/fixtures/tls) is for 127.0.0.1, signed
//! by a test CA that the client trusts through `SSL_CERT_FILE`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA to put in `SSL_CERT_FILE` of the client.
pub const CA_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
const CERT_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/localhost.pem");
const KEY_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/localhost.key");

/// Relays TLS connections to `upstream` until dropped.
pub struct TlsRelay {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsRelay {
    pub async fn start(upstream: SocketAddr) -> TlsRelay {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(CERT_PEM).unwrap().collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(KEY_PEM).unwrap();
        let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let (Ok(mut tls), Ok(mut plain)) =
                        (acceptor.accept(stream).await, TcpStream::connect(upstream).await)
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsRelay { address, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
