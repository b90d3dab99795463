//! Connections to an endpoint: plain TCP, or TLS over TCP with SNI from
//! the endpoint's host. Certificate errors are permanent (a retry cannot
//! help); other handshake failures are transport errors and are retried.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use super::ExportError;
use crate::config::Endpoint;
use crate::error::Error;
use crate::tls::IoStream;

/// Connects to an endpoint, with TLS when configured.
#[derive(Clone)]
pub(crate) struct Connector {
    address: String,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// The name `endpoint`'s certificate must hold. A host that cannot be
/// checked against a certificate (not a DNS name or an IP address) is a
/// configuration error: TLS is never dropped silently.
pub(crate) fn tls_name(endpoint: &Endpoint) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(endpoint.host.clone()).map_err(|_| {
        Error::config(format!(
            "endpoint {}://{}: {:?} is not a host name TLS can verify",
            endpoint.scheme, endpoint.authority, endpoint.host
        ))
    })
}

impl Connector {
    /// A connector for `endpoint`, with TLS when `tls` is given (its
    /// client configuration and the name the server's certificate must
    /// hold, from [`tls_name`]).
    pub fn new(
        endpoint: &Endpoint,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    ) -> Connector {
        Connector {
            address: endpoint.address(),
            tls,
        }
    }

    pub async fn connect(&self) -> Result<Box<dyn IoStream>, ExportError> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| ExportError::Transport(format!("connect {}: {e}", self.address)))?;
        let _ = tcp.set_nodelay(true);
        let Some((cfg, name)) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let stream = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| {
                let host = name.to_str();
                match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(why)) => ExportError::Tls(format!(
                        "certificate of {} not valid for {host}: {why:?}",
                        self.address
                    )),
                    Some(other) => ExportError::Tls(format!("TLS handshake with {host}: {other}")),
                    None => ExportError::Transport(format!("TLS handshake with {host}: {e}")),
                }
            })?;
        Ok(Box::new(stream))
    }
}
