//! TLS over real loopback sockets, with a CA and a server certificate made
//! at test time: every protocol with every compression, a certificate the
//! client does not trust (a clear, permanent error), the explicit insecure
//! option, and configuration errors that name the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use otlpflow::sink::{Sink, SinkOptions, SinkTls, Verify};
use otlpflow::{workload, Compression, HttpVersion, Pipeline, Policy, Protocol, RetryConfig};

struct Pki {
    ca_pem: String,
    server: SinkTls,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "otlpflow test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["otlpflow-client".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca_cert, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: SinkTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            client_ca_pem: None,
        },
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

fn write_temp(name: &str, content: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("otlpflow-tls-{}-{name}", std::process::id()));
    std::fs::write(&p, content).unwrap();
    p
}

fn tls_sink(pki: &Pki) -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        tls: Some(pki.server.clone()),
        ..SinkOptions::default()
    })
    .unwrap()
}

/// The sink's endpoint with `localhost` as the host, to match the cert.
fn localhost(endpoint: &str) -> String {
    endpoint.replace("127.0.0.1", "localhost")
}

fn builder() -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .service_name("tls-test")
        .shards(1)
        .workers(1)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(5),
            multiplier: 2.0,
        })
}

fn record(p: &Pipeline, n: u64) {
    let scope = p.scope("tls", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, 5, i, 1_700_000_000_000_000_000).unwrap();
    }
}

#[test]
fn every_protocol_and_compression_over_tls() {
    let pki = pki();
    let ca = write_temp("ca.pem", &pki.ca_pem);
    for (protocol, version) in [
        (Protocol::Grpc, HttpVersion::Http1),
        (Protocol::HttpProtobuf, HttpVersion::Http1),
        (Protocol::HttpProtobuf, HttpVersion::Http2),
    ] {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let sink = tls_sink(&pki);
            let endpoint = match protocol {
                Protocol::Grpc => localhost(&sink.endpoint()),
                Protocol::HttpProtobuf => localhost(&sink.http_endpoint().unwrap()),
            };
            assert!(endpoint.starts_with("https://"));
            let p = builder()
                .endpoint(endpoint)
                .protocol(protocol)
                .http_version(version)
                .compression(compression)
                .tls_ca_file(&ca)
                .start()
                .unwrap();
            record(&p, 500);
            let s = p.shutdown(Duration::from_secs(10)).unwrap();
            assert_eq!(
                (s.exported, s.failed.total()),
                (500, 0),
                "{protocol:?} {version:?} {compression:?}: {:?}",
                p.last_error()
            );
            assert_eq!(sink.counts().spans, 500);
        }
    }
}

#[test]
fn an_untrusted_certificate_is_a_clear_permanent_error() {
    let pki = pki();
    let other = self::pki(); // a CA that did not sign the server's cert
    let wrong_ca = write_temp("wrong-ca.pem", &other.ca_pem);
    let sink = tls_sink(&pki);
    let p = builder()
        .endpoint(localhost(&sink.endpoint()))
        .tls_ca_file(&wrong_ca)
        .start()
        .unwrap();
    record(&p, 10);
    let s = p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (s.exported, s.failed.total(), s.retries),
        (0, 10, 0),
        "{s:?}"
    );
    let e = p.last_error().unwrap();
    assert!(
        e.contains("certificate") && e.contains("not valid for localhost"),
        "{e}"
    );
    assert_eq!(sink.counts().spans, 0);
    p.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn insecure_skip_verify_is_explicit_and_works() {
    let pki = pki();
    let sink = tls_sink(&pki);
    // Without it (system roots only), the test CA is not trusted.
    let p = builder()
        .endpoint(localhost(&sink.endpoint()))
        .start()
        .unwrap();
    record(&p, 3);
    let s = p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(s.failed.total(), 3);
    p.shutdown(Duration::from_secs(5)).unwrap();
    let p = builder()
        .endpoint(sink.endpoint()) // 127.0.0.1: not even the cert's name
        .tls_insecure_skip_verify(true)
        .start()
        .unwrap();
    // A host that reads only last_error() (C, Python) sees the warning too.
    let warning = p.last_error().unwrap_or_default();
    assert!(warning.contains("verification is disabled"), "{warning:?}");
    record(&p, 3);
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((s.exported, s.failed.total()), (3, 0));
}

#[test]
fn bad_tls_files_are_configuration_errors_naming_the_file() {
    let missing = std::env::temp_dir().join("otlpflow-no-such-ca.pem");
    let e = builder()
        .endpoint("https://localhost:1")
        .tls_ca_file(&missing)
        .start()
        .err()
        .unwrap();
    assert!(
        e.is_config() && e.to_string().contains("otlpflow-no-such-ca.pem"),
        "{e}"
    );
    let empty = write_temp("empty.pem", "not a certificate\n");
    let e = builder()
        .endpoint("https://localhost:1")
        .tls_ca_file(&empty)
        .start()
        .err()
        .unwrap();
    assert!(e.to_string().contains("no certificate"), "{e}");
    let half = |k: &str| (k == "OTEL_EXPORTER_OTLP_CLIENT_KEY").then(|| "/tmp/k.pem".to_owned());
    let e = Pipeline::builder().apply_env_from(half).err().unwrap();
    assert!(e.to_string().contains("CLIENT_CERTIFICATE"), "{e}");
}

/// A TLS file setting naming a device or a pipe (`/dev/zero`, a FIFO
/// nobody writes) was read without end, or waited on forever, before the
/// pipeline could start; a huge file was read whole. Each is now a
/// configuration error naming the file.
#[test]
fn a_tls_file_that_is_a_device_a_pipe_or_huge_is_refused() {
    let fifo = std::env::temp_dir().join(format!("otlpflow-fifo-{}.pem", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path we own; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let huge = std::env::temp_dir().join(format!("otlpflow-huge-{}.pem", std::process::id()));
    std::fs::write(&huge, vec![b'A'; 9 << 20]).unwrap();
    for (file, why) in [
        (PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo.clone(), "not a regular file"),
        (huge.clone(), "larger than 8388608 bytes"),
    ] {
        let e = builder()
            .endpoint("https://localhost:1")
            .tls_ca_file(&file)
            .start()
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(
            e.is_config() && text.contains(file.to_str().unwrap()) && text.contains(why),
            "{text}"
        );
    }
    let pki = pki();
    let ca = write_temp("fifo-ca.pem", &pki.ca_pem);
    let cert = write_temp("fifo-cert.pem", &pki.client_cert_pem);
    let e = builder()
        .endpoint("https://localhost:1")
        .tls_ca_file(&ca)
        .tls_client_cert(&cert, &fifo)
        .start()
        .err()
        .unwrap();
    assert!(e.to_string().contains("tls client key"), "{e}");
    for f in [&fifo, &huge, &ca, &cert] {
        let _ = std::fs::remove_file(f);
    }
}

/// Runs `otlpflow gen --spans N` at `endpoint` with the system trust roots
/// taken from `file` and `dir` (`SSL_CERT_FILE`, `SSL_CERT_DIR`), in a
/// child process so that the variables reach no other test, under a 4 GB
/// address-space limit (a read without end fails there rather than filling
/// the machine). Returns its exit code and stderr, or panics after 20 s.
fn gen_with_system_roots(endpoint: &str, spans: u64, file: &Path, dir: &Path) -> (i32, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -v 4000000; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_otlpflow"))
        .args(["gen", "--endpoint", endpoint, "--spans", &spans.to_string()])
        .args(["--threads", "1", "--workers", "1", "--json"])
        .env("SSL_CERT_FILE", file)
        .env("SSL_CERT_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("gen with SSL_CERT_FILE={file:?} did not end in 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Without a CA file the system's trust roots are used, and
/// `rustls-native-certs` takes them from `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// when set. It read what they name without a bound: `/dev/zero` until an
/// allocation failed and the process aborted, a FIFO forever; and a store
/// with no certificate let the pipeline start with every request bound to
/// fail its handshake. Each is now a configuration error at start, and a
/// CA given through the variables is still trusted.
#[test]
fn system_trust_roots_from_the_environment_are_bounded_and_must_exist() {
    let unique = |name: &str| {
        std::env::temp_dir().join(format!("otlpflow-roots-{}-{name}", std::process::id()))
    };
    let empty_dir = unique("empty-dir");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let fifo = unique("fifo.pem");
    let _ = std::fs::remove_file(&fifo);
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path we own; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let huge_dir = unique("huge-dir");
    std::fs::create_dir_all(&huge_dir).unwrap();
    std::fs::write(huge_dir.join("bundle.pem"), vec![b'A'; 9 << 20]).unwrap();
    let no_certificate = write_temp("roots-none.pem", "not a certificate\n");
    let nowhere = "https://localhost:1";
    for (file, dir, want) in [
        (
            Path::new("/dev/zero"),
            &empty_dir,
            "SSL_CERT_FILE /dev/zero: not a regular file",
        ),
        (&fifo, &empty_dir, "not a regular file"),
        (&no_certificate, &huge_dir, "larger than 8388608 bytes"),
        (&no_certificate, &empty_dir, "no trust roots"),
    ] {
        let (code, text) = gen_with_system_roots(nowhere, 1, file, dir);
        assert!(
            code == 2 && text.contains("configuration error") && text.contains(want),
            "{file:?} {dir:?}: exit {code}, {text}"
        );
    }
    // The test's own CA through the variable: the receiver is trusted.
    let pki = pki();
    let ca = write_temp("roots-ca.pem", &pki.ca_pem);
    let sink = tls_sink(&pki);
    let (code, text) = gen_with_system_roots(&localhost(&sink.endpoint()), 300, &ca, &empty_dir);
    let report: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap_or("")).unwrap_or_default();
    assert_eq!(
        (code, &report["exported"]),
        (0, &serde_json::json!(300)),
        "{text}"
    );
    assert_eq!(sink.counts().spans, 300);
    for f in [&fifo, &no_certificate, &ca] {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir_all(&huge_dir);
    let _ = std::fs::remove_dir_all(&empty_dir);
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let mut pki = pki();
    pki.server.client_ca_pem = Some(pki.ca_pem.clone());
    let ca = write_temp("mtls-ca.pem", &pki.ca_pem);
    let cert = write_temp("client.pem", &pki.client_cert_pem);
    let key = write_temp("client.key", &pki.client_key_pem);
    let sink = tls_sink(&pki);
    // Without a client certificate the server refuses the handshake.
    let p = builder()
        .endpoint(localhost(&sink.endpoint()))
        .tls_ca_file(&ca)
        .start()
        .unwrap();
    record(&p, 4);
    let s = p.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(s.exported, 0, "{s:?}");
    p.shutdown(Duration::from_millis(200)).unwrap();
    // With it, everything arrives.
    let p = builder()
        .endpoint(localhost(&sink.endpoint()))
        .tls_ca_file(&ca)
        .tls_client_cert(&cert, &key)
        .start()
        .unwrap();
    record(&p, 4);
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (s.exported, s.failed.total()),
        (4, 0),
        "{:?}",
        p.last_error()
    );
    assert_eq!(sink.counts().spans, 4);
}

/// Each signal's own endpoint decides its TLS: with a cleartext general
/// endpoint and an `https://` logs endpoint (and the reverse), each signal
/// reaches a receiver that speaks only its scheme, with its headers. Before
/// per-signal TLS, the logs exporter spoke cleartext h2c to the TLS
/// receiver and sent its `authorization` header in the clear.
#[test]
fn each_signals_scheme_decides_its_own_tls() {
    let pki = pki();
    let ca = write_temp("ca-mixed.pem", &pki.ca_pem);
    let keep = |tls: Option<SinkTls>| {
        Sink::start(SinkOptions {
            verify: Verify::Full,
            keep_requests: true,
            tls,
            ..SinkOptions::default()
        })
        .unwrap()
    };
    for logs_over_tls in [true, false] {
        let (plain, secure) = (keep(None), keep(Some(pki.server.clone())));
        let (general, logs) = if logs_over_tls {
            (plain.endpoint(), localhost(&secure.endpoint()))
        } else {
            (localhost(&secure.endpoint()), plain.endpoint())
        };
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", general),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", logs),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer s3cret".into(),
            ),
        ];
        let p = builder()
            .apply_env_from(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap()
            .tls_ca_file(&ca)
            .start()
            .unwrap();
        let scope = p.scope("tls", "1");
        for i in 0..20 {
            workload::record_benchmark_span(&p, &scope, 1, i, 1_700_000_000_000_000_000).unwrap();
            workload::record_benchmark_log(&p, &scope, 1, i, 1_700_000_000_000_000_000).unwrap();
        }
        let s = p.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (s.exported, s.failed.total()),
            (40, 0),
            "logs over TLS: {logs_over_tls}: {:?}",
            p.last_error()
        );
        let (spans_at, logs_at) = if logs_over_tls {
            (&plain, &secure)
        } else {
            (&secure, &plain)
        };
        assert_eq!((spans_at.counts().spans, logs_at.counts().logs), (20, 20));
        assert_eq!((spans_at.counts().logs, logs_at.counts().spans), (0, 0));
        let auth = logs_at.last_headers().unwrap();
        assert_eq!(auth.get("authorization").unwrap(), "Bearer s3cret");
    }
}

/// An `https://` endpoint whose host TLS cannot verify (not a DNS name, not
/// an IP address: `127.1`) is a configuration error naming the endpoint; it
/// is never sent in plaintext.
#[test]
fn tls_fails_closed_on_a_host_it_cannot_verify() {
    let plain = Sink::start(SinkOptions::default()).unwrap();
    let port = plain.addr().port();
    for endpoint in [
        format!("https://127.1:{port}"),
        format!("https://exa mple:{port}"),
    ] {
        let e = match builder()
            .endpoint(endpoint.clone())
            .header("authorization", "Bearer s3cret")
            .start()
        {
            Ok(_) => panic!("{endpoint} started"),
            Err(e) => e,
        };
        assert!(e.is_config(), "{e}");
        assert!(
            e.to_string().contains("127.1") || e.to_string().contains("exa mple"),
            "{e}"
        );
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
    // A per-signal endpoint too.
    let e = builder()
        .endpoint(plain.endpoint())
        .logs_endpoint(format!("https://127.1:{port}"))
        .start()
        .err()
        .expect("a logs endpoint TLS cannot verify is refused");
    assert!(e.is_config() && e.to_string().contains("127.1"), "{e}");
    assert_eq!(plain.counts().requests, 0);
}
