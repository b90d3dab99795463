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
        let roots = match &s.ca_file {
            Some(path) => ca_file_roots(path)?,
            None => system_roots()?,
        };
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

/// The trust roots of the CA file at `path` (`tls_ca_file`), which must
/// hold at least one certificate.
fn ca_file_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, Error> {
    let certs = read_certs("tls ca file", path)?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "tls ca file {}: no certificate in it",
            path.display()
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| Error::config(format!("tls ca file {}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The system's trust roots, for when no CA file is set, as
/// `rustls-native-certs` finds them: the files `SSL_CERT_FILE` and the
/// directories `SSL_CERT_DIR` name, else the platform's store.
///
/// That crate reads what the variables name without a bound (a
/// `SSL_CERT_FILE` of `/dev/zero` was read until an allocation failed and
/// the process aborted, a FIFO blocked `start` forever), so they are held
/// to the rule of otlpflow's own TLS files first. And a store with no
/// certificate in it (a container image without its CA bundle) is a
/// configuration error here, as hyper-rustls makes it, rather than every
/// request failing its handshake later.
fn system_roots() -> Result<rustls::RootCertStore, Error> {
    const FILE: &str = "SSL_CERT_FILE";
    const DIR: &str = "SSL_CERT_DIR";
    if let Some(file) = std::env::var_os(FILE) {
        check_pem_file(FILE, std::path::Path::new(&file))?;
    }
    if let Some(dirs) = std::env::var_os(DIR) {
        for dir in std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()) {
            // The crate reads the regular files among the entries (links
            // followed) and skips the rest; the same rule for each of them.
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                    check_pem_file(DIR, &path)?;
                }
            }
        }
    }
    let native = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        let why = match native.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(Error::config(format!(
            "tls: no trust roots: the system's certificate store has no usable certificate{why}; \
             set tls_ca_file (OTEL_EXPORTER_OTLP_CERTIFICATE), or install the system's CA certificates"
        )));
    }
    Ok(roots)
}

/// Checks that `path` names a regular file of at most `MAX_PEM_FILE` bytes
/// (`what` names it in errors). A device or a pipe named by a setting
/// (`/dev/zero`, a FIFO nobody writes) was read without end, or waited for
/// forever, before the pipeline could start.
fn check_pem_file(what: &str, path: &std::path::Path) -> Result<(), Error> {
    let fail = |why: String| Error::config(format!("{what} {}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_PEM_FILE {
        return Err(fail(format!("larger than {MAX_PEM_FILE} bytes")));
    }
    Ok(())
}

/// The bytes of the PEM file at `path` (`what` names it in errors): a
/// regular file of at most `MAX_PEM_FILE` bytes (`check_pem_file`; the
/// read is bounded too, for a file that grows in between).
fn read_pem_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let fail = |why: String| Error::config(format!("{what} {}: {why}", path.display()));
    check_pem_file(what, path)?;
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
