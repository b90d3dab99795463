//! TLS with rustls (the `ring` provider), for both sides: the exporter's
//! client configuration (system trust roots or a custom CA file, an optional
//! client certificate for mutual TLS, ALPN for the HTTP version; certificate
//! checks skipped only when the user asks, with a warning) and the embedded
//! receiver's server configuration. The byte stream both run over is
//! [`IoStream`]: TCP, or TLS over TCP.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::TlsSettings;
use crate::error::Error;

/// A byte stream a protocol runs over: TCP or TLS over TCP.
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

/// What `tls_insecure_skip_verify` says wherever a host may look.
pub(crate) const INSECURE_WARNING: &str =
    "TLS certificate verification is disabled (tls_insecure_skip_verify): anyone on the path can read and change the telemetry";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client configuration, reading the files now so that a
/// missing or malformed file is a configuration error naming it.
pub(crate) fn client_config(s: &TlsSettings, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("tls: {e}")))?;
    let builder = if s.insecure_skip_verify {
        log::warn!("otlpflow: {INSECURE_WARNING}");
        // Hosts without a `log` subscriber (C, Python) see it on stderr,
        // once per process, and in the pipeline's `last_error`.
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| eprintln!("otlpflow: warning: {INSECURE_WARNING}"));
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &s.ca_file {
            Some(path) => {
                let certs = read_certs("tls ca file", path)?;
                if certs.is_empty() {
                    return Err(Error::config(format!(
                        "tls ca file {}: no certificate in it",
                        path.display()
                    )));
                }
                for c in certs {
                    roots.add(c).map_err(|e| {
                        Error::config(format!("tls ca file {}: {e}", path.display()))
                    })?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for c in native.certs {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &s.client_cert {
        Some((cert, key)) => {
            let chain = read_certs("tls client certificate", cert)?;
            let pem = read_pem_file("tls client key", key)?;
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| Error::config(format!("tls client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::config(format!("tls client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The largest PEM file read (a system's whole CA bundle is a few hundred
/// KB).
const MAX_PEM_FILE: u64 = 8 << 20;

/// The bytes of the PEM file at `path` (`what` names it in errors): a
/// regular file of at most `MAX_PEM_FILE` bytes. A device or a pipe named
/// by a setting (`/dev/zero`, a FIFO nobody writes) was read without end,
/// or waited for forever, before the pipeline could start.
fn read_pem_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let fail = |why: String| Error::config(format!("{what} {}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE + 1).read_to_end(&mut pem))
        .map_err(|e| fail(e.to_string()))?;
    if pem.len() as u64 > MAX_PEM_FILE {
        return Err(fail(format!("larger than {MAX_PEM_FILE} bytes")));
    }
    Ok(pem)
}

/// The certificates of the PEM file at `path` (`what` names it in errors).
fn read_certs(what: &str, path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_slice_iter(&read_pem_file(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("{what} {}: {e}", path.display())))
}

/// Accepts any server certificate; signatures are still checked so that the
/// handshake itself is sound. Only for `insecure_skip_verify`.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A server configuration for the embedded receiver (tests): the given
/// certificate chain and key, ALPN h2 and http/1.1, and client certificates
/// required and checked against `client_ca_pem` when given (mutual TLS).
pub(crate) fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(std::io::Error::other)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(c.map_err(std::io::Error::other)?)
                    .map_err(std::io::Error::other)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(std::io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
