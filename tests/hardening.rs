//! Hostile and careless input, each a test that failed on the code before
//! its fix: deadlines that would wrap, shutdown's own deadline, losses at
//! shutdown counted under the reason the docs give, secrets kept out of
//! every error and `Debug`, a receiver that refuses bad requests with a
//! status and counts them, and an exporter that bounds the response
//! headers a receiver sends it and takes no pushed streams. Real sockets
//! on loopback; every load bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otlpflow::sink::{Fault, Sink, SinkOptions, Verify};
use otlpflow::{workload, FailReason, Pipeline, Policy, RetryConfig};

fn builder(endpoint: &str) -> otlpflow::PipelineBuilder {
    Pipeline::builder()
        .endpoint(endpoint)
        .service_name("hardening")
        .shards(1)
        .workers(1)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::MAX,
        })
}

/// A pipeline to `endpoint` over `protocol` that gives up on a request
/// after `budget` of retries (the default backoff).
fn retrying_for(endpoint: &str, protocol: otlpflow::Protocol, budget: Duration) -> Pipeline {
    builder(endpoint)
        .protocol(protocol)
        .retry(RetryConfig {
            max_elapsed: budget,
            ..RetryConfig::default()
        })
        .start()
        .unwrap()
}

fn record(p: &Pipeline, n: u64) {
    let scope = p.scope("hardening", "1");
    for i in 0..n {
        workload::record_benchmark_span(p, &scope, 3, i, 1_700_000_000_000_000_000).unwrap();
    }
}

/// `shutdown(Duration::MAX)`, the usual "wait as long as it takes", used to
/// panic after the pipeline was closed (so it could never be shut down);
/// `flush(Duration::MAX)` likewise. Now both wait, and everything arrives.
/// A `Block` policy with `Duration::MAX` of patience records too.
#[test]
fn the_longest_timeouts_wait_instead_of_wrapping() {
    let sink = Sink::start(SinkOptions::default()).unwrap();
    let p = builder(&sink.endpoint()).start().unwrap();
    record(&p, 300);
    let s = p.flush(Duration::MAX).unwrap();
    assert_eq!(s.exported, 300);
    record(&p, 200);
    let s = p.shutdown(Duration::MAX).unwrap();
    assert_eq!((s.exported, s.in_flight), (500, 0), "{s:?}");
    assert_eq!(sink.counts().spans, 500);
    assert!(p.shutdown(Duration::MAX).unwrap_err().is_shutdown());
}

/// A receiver that answers every request with UNAVAILABLE, a retry budget
/// of a minute and a shutdown deadline of 300 ms: shutdown returns by its
/// deadline plus a small constant, and the records still retrying are
/// counted as shutdown losses (not as retries exhausted), with the identity
/// exact.
#[test]
fn shutdown_keeps_its_deadline_and_counts_its_losses_as_shutdown() {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Full,
        ..SinkOptions::default()
    })
    .unwrap();
    sink.inject(
        Fault::GrpcStatus {
            code: 14,
            retry_info: None,
        },
        100_000,
    );
    let p = builder(&sink.endpoint())
        .max_in_flight(1)
        .max_batch_items(50)
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_elapsed: Duration::from_secs(60),
            multiplier: 2.0,
        })
        .start()
        .unwrap();
    record(&p, 400);
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let s = p.shutdown(Duration::from_millis(300)).unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1800), "shutdown took {took:?}");
    s.check_identity().unwrap();
    assert_eq!(s.in_flight, 0, "{s:?}");
    assert_eq!(s.exported, 0, "{s:?}");
    assert_eq!(s.failed[FailReason::Shutdown], 400, "{s:?}");
    assert_eq!(s.failed[FailReason::Exhausted], 0, "{s:?}");
}

/// Header values (credentials, usually) never appear in `Debug` output or
/// in an error: not from the builder, not from a per-signal header, not
/// from a malformed `OTEL_EXPORTER_OTLP_HEADERS` entry.
#[test]
fn secrets_stay_out_of_debug_output_and_errors() {
    let b = Pipeline::builder()
        .header("authorization", "Bearer top-s3cret")
        .signal_header(otlpflow::Signal::Logs, "x-api-key", "also-s3cret");
    let shown = format!("{b:?}");
    assert!(
        shown.contains("authorization") && shown.contains("x-api-key"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    let shown = format!("{:?}", b.clone().build().unwrap());
    assert!(!shown.contains("s3cret"), "{shown}");
    for bad in [
        "Authorization: Bearer top-s3cret",
        "ok=1,Authorization Bearer top-s3cret",
        "key=%zzs3cret",
    ] {
        let e = Pipeline::builder()
            .apply_env_from(|k| (k == "OTEL_EXPORTER_OTLP_HEADERS").then(|| bad.to_owned()))
            .unwrap_err();
        let text = e.to_string();
        assert!(
            e.is_config() && text.contains("OTEL_EXPORTER_OTLP_HEADERS"),
            "{text}"
        );
        assert!(text.contains("entry"), "names the position: {text}");
        assert!(
            !text.contains("s3cret") && !text.contains("Bearer"),
            "{text}"
        );
    }
}

/// Credentials written into an endpoint URL (`http://user:password@host`)
/// went into the `:authority` of every request and into every log line and
/// error that named the endpoint ("endpoint user:hunter2@127.0.0.1:4317 not
/// answering"), and the host they made could not be reached. Now they are
/// sent as `Basic` authorization, as curl and Go's HTTP client send them,
/// and shown nowhere; an `authorization` header set explicitly wins.
#[test]
fn credentials_in_an_endpoint_url_are_basic_auth_and_shown_nowhere() {
    let sink = Sink::start(SinkOptions {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        keep_requests: true,
        ..SinkOptions::default()
    })
    .unwrap();
    let with_credentials = |endpoint: String| endpoint.replace("://", "://otel:hunter2@");
    let grpc = with_credentials(sink.endpoint());
    let http = with_credentials(sink.http_endpoint().unwrap());
    // "otel:hunter2" in base64.
    let basic = "Basic b3RlbDpodW50ZXIy";
    for (endpoint, protocol) in [
        (&grpc, otlpflow::Protocol::Grpc),
        (&http, otlpflow::Protocol::HttpProtobuf),
    ] {
        let b = builder(endpoint).protocol(protocol);
        assert!(!format!("{b:?}").contains("hunter2"), "{b:?}");
        let p = b.start().unwrap();
        record(&p, 50);
        let s = p.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(s.exported, 50, "{protocol:?}: {:?}", p.last_error());
        let h = sink.last_headers().unwrap();
        assert_eq!(h.get("authorization").unwrap(), basic, "{protocol:?}");
        if protocol == otlpflow::Protocol::HttpProtobuf {
            let host = h.get("host").unwrap().to_str().unwrap();
            assert!(host.starts_with("127.0.0.1:"), "{host}");
        }
    }
    let p = builder(&grpc)
        .header("authorization", "Bearer explicit")
        .start()
        .unwrap();
    record(&p, 5);
    p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(
        sink.last_headers().unwrap().get("authorization").unwrap(),
        "Bearer explicit"
    );

    // Nobody answering: the errors and the warnings name the endpoint
    // without its credentials.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let p = retrying_for(
        &format!("http://otel:hunter2@127.0.0.1:{port}"),
        otlpflow::Protocol::Grpc,
        Duration::from_millis(300),
    );
    record(&p, 5);
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.failed.total(), 5, "{s:?}");
    let error = p.last_error().unwrap();
    assert!(!error.contains("hunter2"), "{error}");
    for url in ["https://otel:hunter2@:4317", "ftp://otel:hunter2@collector"] {
        let e = Pipeline::builder()
            .endpoint(url)
            .start()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("***@") && !e.contains("hunter2"), "{e}");
    }
}

/// A query in an endpoint URL (`http://collector:4318?key=k`, where some
/// services take a key) follows the signal's path in every OTLP/HTTP
/// request and is shown nowhere. It used to be taken for part of the port
/// (`start` failed, its error showing the key) or of the path
/// (`/otlp?key=k/v1/traces`).
#[test]
fn a_query_in_an_endpoint_follows_the_signal_path_and_is_shown_nowhere() {
    let sink = Sink::start(SinkOptions {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        keep_requests: true,
        ..SinkOptions::default()
    })
    .unwrap();
    let endpoint = format!("{}?key=hunter2", sink.http_endpoint().unwrap());
    let b = builder(&endpoint).protocol(otlpflow::Protocol::HttpProtobuf);
    assert!(!format!("{b:?}").contains("hunter2"), "{b:?}");
    let p = b.start().unwrap();
    record(&p, 50);
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(s.exported, 50, "{:?}", p.last_error());
    assert_eq!(
        sink.last_http_target().as_deref(),
        Some("/v1/traces?key=hunter2")
    );
    let e = Pipeline::builder()
        .endpoint("http://collector:43x7/otlp?key=hunter2")
        .start()
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/otlp?***") && !e.contains("hunter2"), "{e}");
}

/// A receiver that throttles every request with `Retry-After: 0` (or a
/// RetryInfo of zero) had each request retried at once, again and again,
/// as fast as the round trip allowed, for the whole retry budget: a storm
/// at the receiver and a core spinning in the host. The server's delay now
/// only lengthens the backoff, never shortens it.
#[test]
fn a_zero_retry_after_does_not_make_a_retry_storm() {
    use otlpflow::Protocol;
    for (fault, protocol) in [
        (
            Fault::HttpStatus {
                status: 429,
                retry_after: Some("0".into()),
            },
            Protocol::HttpProtobuf,
        ),
        (
            Fault::GrpcStatus {
                code: 8,
                retry_info: Some(Duration::ZERO),
            },
            Protocol::Grpc,
        ),
    ] {
        let sink = Sink::start(SinkOptions {
            http_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..SinkOptions::default()
        })
        .unwrap();
        sink.inject(fault.clone(), 100_000);
        let endpoint = match protocol {
            Protocol::Grpc => sink.endpoint(),
            Protocol::HttpProtobuf => sink.http_endpoint().unwrap(),
        };
        let p = retrying_for(&endpoint, protocol, Duration::from_secs(1));
        record(&p, 10);
        let s = p.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(s.failed[FailReason::Exhausted], 10, "{fault:?}: {s:?}");
        // Backoff from 50 ms, doubling, jittered down to half: at most
        // seven attempts fit in the second (there were hundreds).
        let attempts = sink.counts().injected;
        assert!(
            (2..=8).contains(&attempts),
            "{fault:?}: {attempts} attempts"
        );
    }
}

/// An endpoint whose path (or host) a request URI cannot hold, a space in
/// it say, made the exporters fall back to `localhost/v1/traces`: log
/// records went to the traces path, where a receiver read them as spans,
/// and all were counted exported. Now the pipeline does not start, and
/// the error names the endpoint.
#[test]
fn an_endpoint_no_request_can_carry_is_refused_at_start() {
    let sink = Sink::start(SinkOptions {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..SinkOptions::default()
    })
    .unwrap();
    let http = sink.http_endpoint().unwrap();
    for (endpoint, protocol) in [
        (format!("{http}/my otlp"), otlpflow::Protocol::HttpProtobuf),
        (
            sink.endpoint().replace("127.0.0.1", "bad host"),
            otlpflow::Protocol::Grpc,
        ),
    ] {
        let e = builder(&endpoint).protocol(protocol).start().err().unwrap();
        assert!(
            e.is_config() && e.to_string().contains("cannot be sent in a request"),
            "{endpoint}: {e}"
        );
    }
    assert_eq!(sink.counts().requests, 0);
}

/// An `ExportTraceServiceRequest` of `n` empty spans: two bytes each on the
/// wire, hundreds of bytes each once decoded.
fn empty_spans(n: usize) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let spans = [0x12u8, 0x00].repeat(n);
    let mut scope_spans = vec![0x12];
    varint(&mut scope_spans, spans.len() as u64);
    scope_spans.extend_from_slice(&spans);
    let mut req = vec![0x0a];
    varint(&mut req, scope_spans.len() as u64);
    req.extend_from_slice(&scope_spans);
    req
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The address of the receiver's OTLP/HTTP port.
fn http_addr(sink: &Sink) -> std::net::SocketAddr {
    let endpoint = sink.http_endpoint().expect("an OTLP/HTTP port");
    endpoint.trim_start_matches("http://").parse().unwrap()
}

/// Runs `talk` over a new HTTP/2 connection to `addr`, on a runtime of its
/// own.
fn over_h2<T, F: std::future::Future<Output = T>>(
    addr: std::net::SocketAddr,
    talk: impl FnOnce(h2::client::SendRequest<bytes::Bytes>) -> F,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        talk(client).await
    })
}

/// Sends one gRPC message (`prefix` claims `declared` bytes) with `body`
/// after it, in chunks, and returns the grpc-status it got.
fn grpc_call(
    addr: std::net::SocketAddr,
    encoding: Option<&str>,
    declared: usize,
    body: Vec<u8>,
) -> Option<String> {
    over_h2(addr, |mut client| async move {
        let mut req = http::Request::post(format!("http://{addr}{}", otlpflow::sink::TRACE_PATH))
            .header("content-type", "application/grpc");
        if let Some(e) = encoding {
            req = req.header("grpc-encoding", e);
        }
        let (resp, mut stream) = client.send_request(req.body(()).unwrap(), false).unwrap();
        let mut framed = vec![encoding.is_some() as u8];
        framed.extend_from_slice(&(declared as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        // Sends until the receiver answers (or refuses the stream).
        let send = async {
            for chunk in framed.chunks(64 << 10) {
                stream.reserve_capacity(chunk.len());
                if std::future::poll_fn(|cx| stream.poll_capacity(cx))
                    .await
                    .is_none()
                {
                    return;
                }
                if stream
                    .send_data(bytes::Bytes::copy_from_slice(chunk), false)
                    .is_err()
                {
                    return;
                }
            }
            let _ = stream.send_data(bytes::Bytes::new(), true);
            std::future::pending::<()>().await
        };
        let resp = tokio::select! {
            r = resp => r,
            _ = send => unreachable!(),
        };
        let resp = resp.ok()?;
        if let Some(v) = resp.headers().get("grpc-status") {
            return Some(v.to_str().unwrap().to_owned());
        }
        // An answered call: the status is in the trailers.
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            chunk.ok()?;
        }
        let trailers = body.trailers().await.ok()??;
        trailers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    })
}

/// A few kilobytes of gzip that inflate to a request of a million empty
/// spans would have made the receiver's full decode allocate gigabytes:
/// it is refused with RESOURCE_EXHAUSTED, counted, and the receiver goes on
/// serving. A gRPC message declaring 1 GiB is refused from its prefix,
/// before its body is gathered.
#[test]
fn the_receiver_bounds_what_a_request_may_cost() {
    let sink = Sink::start(SinkOptions::default()).unwrap();
    let bomb = gzip(&empty_spans(1 << 20));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let status = grpc_call(sink.addr(), Some("gzip"), bomb.len(), bomb);
    assert_eq!(status.as_deref(), Some("8"));
    assert_eq!((sink.counts().errors, sink.counts().spans), (1, 0));
    // The walk-only receiver (the CLI's) walks the same request without
    // allocating, and skips the sampled full decode it could not afford.
    let walker = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 1 },
        ..SinkOptions::default()
    })
    .unwrap();
    let bomb = gzip(&empty_spans(1 << 20));
    let status = grpc_call(walker.addr(), Some("gzip"), bomb.len(), bomb);
    assert_eq!(status.as_deref(), Some("0"));
    assert_eq!(walker.counts().spans, 1 << 20);
    // A message declaring 1 GiB: refused after its first chunk.
    let t0 = Instant::now();
    let status = grpc_call(sink.addr(), None, 1 << 30, vec![0; 4 << 20]);
    assert_eq!(status.as_deref(), Some("8"));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(sink.counts().errors, 2);
    still_serves(&sink);
}

/// The receiver still takes spans: ten sent, ten exported and received.
fn still_serves(sink: &Sink) {
    let before = sink.counts().spans;
    let p = builder(&sink.endpoint()).start().unwrap();
    record(&p, 10);
    assert_eq!(p.shutdown(Duration::from_secs(10)).unwrap().exported, 10);
    assert_eq!(sink.counts().spans, before + 10);
}

/// Clients that open connections and send half a request head are dropped
/// after the header timeout, on the OTLP/HTTP port, the gRPC port (an
/// HTTP/2 preface never finished) and the Prometheus endpoint; refusals of
/// unknown paths and methods are counted; Prometheus answers GET and HEAD
/// only.
#[test]
fn slow_clients_are_dropped_and_refusals_counted() {
    use std::io::{Read, Write};
    let sink = Sink::start(SinkOptions {
        http_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        header_timeout: Duration::from_millis(300),
        ..SinkOptions::default()
    })
    .unwrap();
    let http_addr = http_addr(&sink);
    let mut slow = Vec::new();
    for i in 0..20 {
        let (addr, partial): (_, &[u8]) = if i % 2 == 0 {
            (http_addr, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        } else {
            (sink.addr(), b"PRI * HTTP/2.0\r\n")
        };
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(partial).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        slow.push(c);
    }
    let t0 = Instant::now();
    for mut c in slow {
        let mut buf = [0u8; 256];
        // The receiver closes the connection (EOF, or a 408 then EOF);
        // a read timeout here would mean it kept the connection.
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("connection kept open: {e}"),
            }
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    // Refusals are counted.
    for request in [
        "GET /v1/traces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let mut c = std::net::TcpStream::connect(http_addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 40"), "{answer}");
    }
    assert_eq!(sink.counts().errors, 2);
    // Prometheus: GET and HEAD, nothing else.
    let p = builder(&sink.endpoint())
        .prometheus(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .unwrap();
    let prom = p.prometheus_addr().unwrap();
    let ask = |method: &str| {
        let mut c = std::net::TcpStream::connect(prom).unwrap();
        write!(
            c,
            "{method} /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(ask("GET").starts_with("HTTP/1.1 200"));
    assert!(ask("HEAD").starts_with("HTTP/1.1 200"));
    let post = ask("POST");
    assert!(
        post.starts_with("HTTP/1.1 405") && post.contains("allow: GET, HEAD"),
        "{post}"
    );
    let mut half = std::net::TcpStream::connect(prom).unwrap();
    half.write_all(b"GET /metr").unwrap();
    half.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    // Closed by the endpoint after its 5 s header timeout (a read timeout
    // here would be an error).
    assert!(half.read_to_end(&mut rest).is_ok());
    p.shutdown(Duration::from_secs(5)).unwrap();
}

/// How `HostileReceiver` answers: every request with OK, its response
/// headers padded with `pad` bytes, after trying to push `pushes` streams
/// to the client.
#[derive(Clone, Copy)]
struct Answer {
    pad: usize,
    pushes: usize,
}

/// A gRPC receiver, h2's server on a loopback socket, answering as told;
/// it counts the pushed streams the client let it open.
struct HostileReceiver {
    endpoint: String,
    pushed: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileReceiver {
    fn start(answer: Answer) -> HostileReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let pushed = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let count = pushed.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { return };
                            tokio::spawn(serve_hostile(socket, answer, count.clone()));
                        }
                    }
                }
            });
        });
        HostileReceiver {
            endpoint,
            pushed,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HostileReceiver {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_hostile(socket: tokio::net::TcpStream, answer: Answer, pushed: Arc<AtomicUsize>) {
    let Ok(mut conn) = h2::server::handshake(socket).await else {
        return;
    };
    // Each request in a task of its own: the connection makes progress
    // (the request bodies arrive) only while `accept` is polled.
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        let pushed = pushed.clone();
        tokio::spawn(async move {
            let mut body = request.into_body();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            for i in 0..answer.pushes {
                let promised = http::Request::get(format!("http://127.0.0.1/pushed/{i}"))
                    .body(())
                    .unwrap();
                if respond.push_request(promised).is_ok() {
                    pushed.fetch_add(1, Ordering::Relaxed);
                }
            }
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .header("x-padding", "p".repeat(answer.pad))
                .body(())
                .unwrap();
            let Ok(mut send) = respond.send_response(response, false) else {
                return;
            };
            // An empty ExportTraceServiceResponse in its gRPC frame, then OK.
            let _ = send.send_data(bytes::Bytes::from_static(&[0; 5]), false);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let _ = send.send_trailers(trailers);
        });
    }
}

/// The headers of a receiver's response are bounded: with h2's default a
/// receiver could make every connection buffer a 16 MiB header list. Now
/// 8 KiB of headers pass; 32 KiB (over the 16 KiB limit) get that response
/// refused as malformed, a permanent error, counted; 1 MiB (past h2's
/// abuse limit, 4x ours) closes the connection, and the requests on it are
/// retried until their budget runs out, counted. Nothing is exported past
/// the limit, and nothing goes uncounted.
#[test]
fn a_receivers_response_headers_are_bounded() {
    for (pad, outcome) in [
        (8 << 10, None),
        (32 << 10, Some(FailReason::Permanent)),
        (1 << 20, Some(FailReason::Exhausted)),
    ] {
        let receiver = HostileReceiver::start(Answer { pad, pushes: 0 });
        let p = builder(&receiver.endpoint)
            .retry(RetryConfig {
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
                max_elapsed: Duration::from_secs(1),
                multiplier: 2.0,
            })
            .start()
            .unwrap();
        record(&p, 100);
        let s = p.shutdown(Duration::from_secs(20)).unwrap();
        s.check_identity().unwrap();
        let Some(reason) = outcome else {
            assert_eq!(s.exported, 100, "{pad} bytes of headers: {s:?}");
            continue;
        };
        assert_eq!(s.exported, 0, "{pad} bytes of headers: {s:?}");
        assert_eq!(s.failed[reason], 100, "{pad} bytes of headers: {s:?}");
        if reason == FailReason::Permanent {
            let error = p.last_error().unwrap_or_default();
            assert!(
                error.contains("malformed response") && error.contains("headers over 16384 bytes"),
                "{error}"
            );
        }
    }
}

/// A receiver cannot push streams to the exporter: h2's client accepted
/// server push by default, with no limit on the streams a server could
/// reserve that way (each kept in h2's stream table, its data held up to
/// the stream window). The exporter now tells the server push is off, so
/// a server's push is refused before it is sent, and exports go on.
#[test]
fn a_receiver_cannot_push_streams() {
    let receiver = HostileReceiver::start(Answer { pad: 0, pushes: 50 });
    let p = builder(&receiver.endpoint).start().unwrap();
    record(&p, 100);
    let s = p.shutdown(Duration::from_secs(20)).unwrap();
    s.check_identity().unwrap();
    assert_eq!(s.exported, 100, "{s:?}");
    assert_eq!(receiver.pushed.load(Ordering::Relaxed), 0);
}

/// What a gRPC call that sent part of its message and then stalled got:
/// a status, a stream reset, or nothing within `wait`.
#[derive(Debug, PartialEq)]
enum Stalled {
    Status(String),
    Reset,
    Nothing,
}

/// Opens `streams` gRPC calls on one connection, each declaring a message
/// of `declared` bytes and sending `sent` of them before stalling, and
/// returns what each got within `wait`.
fn stall_grpc(
    addr: std::net::SocketAddr,
    streams: usize,
    declared: usize,
    sent: usize,
    wait: Duration,
) -> Vec<Stalled> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    over_h2(addr, |client| async move {
        let mut calls = Vec::new();
        for _ in 0..streams {
            let mut client = client.clone().ready().await.unwrap();
            let req = http::Request::post(format!("http://{addr}{}", otlpflow::sink::TRACE_PATH))
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let (resp, mut stream) = client.send_request(req, false).unwrap();
            calls.push(tokio::spawn(async move {
                let send = async {
                    let mut prefix = vec![0u8];
                    prefix.extend_from_slice(&(declared as u32).to_be_bytes());
                    let _ = stream.send_data(bytes::Bytes::from(prefix), false);
                    let mut left = sent;
                    while left > 0 {
                        let n = left.min(ZEROS.len());
                        stream.reserve_capacity(n);
                        match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                            Some(Ok(cap)) => {
                                let n = n.min(cap);
                                if stream
                                    .send_data(bytes::Bytes::from_static(&ZEROS[..n]), false)
                                    .is_err()
                                {
                                    break;
                                }
                                left -= n;
                            }
                            _ => break,
                        }
                    }
                    std::future::pending::<()>().await
                };
                let answer = tokio::select! {
                    r = resp => r,
                    _ = send => unreachable!(),
                    _ = tokio::time::sleep(wait) => return Stalled::Nothing,
                };
                match answer {
                    Ok(r) => Stalled::Status(
                        r.headers()
                            .get("grpc-status")
                            .map_or("none", |v| v.to_str().unwrap())
                            .to_owned(),
                    ),
                    Err(_) => Stalled::Reset,
                }
            }));
        }
        let mut got = Vec::new();
        for c in calls {
            got.push(c.await.unwrap());
        }
        got
    })
}

/// Streams that send most of a large message and stall cannot make the
/// receiver hold more than its bound: past `max_buffered_bytes` a body is
/// refused as throttled (RESOURCE_EXHAUSTED with a RetryInfo, or HTTP 429
/// with Retry-After), and a body that stops arriving is dropped after the
/// body timeout, giving its bytes back. Before the bound, one connection of
/// 32 streams sending 48 MiB each held about 1.5 GB, and for ever.
#[test]
fn stalled_request_bodies_are_bounded_in_bytes_and_time() {
    use std::io::{Read, Write};
    let sink = Sink::start(SinkOptions {
        http_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        max_buffered_bytes: 8 << 20,
        body_timeout: Duration::from_secs(1),
        ..SinkOptions::default()
    })
    .unwrap();
    // 10 calls of 3 MiB each, sending 2 MiB and stalling, against an 8 MiB
    // bound: two are let in, the other eight refused, and the two reset
    // after the body timeout.
    let got = stall_grpc(sink.addr(), 10, 3 << 20, 2 << 20, Duration::from_secs(5));
    let refused = got
        .iter()
        .filter(|g| **g == Stalled::Status("8".into()))
        .count();
    let reset = got.iter().filter(|g| **g == Stalled::Reset).count();
    assert_eq!((refused, reset), (8, 2), "{got:?}");
    assert_eq!(sink.counts().throttled, 8);
    // A message larger than the bound could never be let in: refused as
    // too large (no RetryInfo, counted in errors), not as busy.
    let errors = sink.counts().errors;
    let status = grpc_call(sink.addr(), None, 9 << 20, vec![0; 64 << 10]);
    assert_eq!(status.as_deref(), Some("8"));
    assert_eq!(
        (sink.counts().errors, sink.counts().throttled),
        (errors + 1, 8)
    );
    // OTLP/HTTP: the same bound, and 408 for a body that stopped.
    let http_addr = http_addr(&sink);
    let chunk = vec![0u8; 2 << 20];
    let mut conns = Vec::new();
    for _ in 0..4 {
        let mut c = std::net::TcpStream::connect(http_addr).unwrap();
        write!(
            c,
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            3 << 20
        )
        .unwrap();
        c.write_all(&chunk).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conns.push(c);
        // Each body in before the next, so which ones fit is known.
        std::thread::sleep(Duration::from_millis(100));
    }
    let answers: Vec<String> = conns
        .into_iter()
        .map(|mut c| {
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            String::from_utf8_lossy(&head).into_owned()
        })
        .collect();
    assert_eq!(
        answers,
        [
            "HTTP/1.1 408",
            "HTTP/1.1 408",
            "HTTP/1.1 429",
            "HTTP/1.1 429"
        ],
        "{answers:?}"
    );
    // Every byte given back: a whole request of 7 MiB fits again, and
    // spans are received as before.
    let status = grpc_call(sink.addr(), None, 7 << 20, vec![0; 7 << 20]);
    assert_ne!(status.as_deref(), Some("8"));
    still_serves(&sink);
}

/// Idle connections cannot keep other clients out: the receiver closes at
/// accept any connection past `max_connections`, and 1,024 connections
/// that sent an HTTP/2 preface and then nothing used to hold every slot
/// for as long as their client liked (`otlpflow gen` then exported 0 of
/// 1,000 spans). A connection that moves no bytes for `idle_timeout` is
/// closed; one that carries requests is not.
#[test]
fn idle_connections_are_closed_and_cannot_keep_clients_out() {
    use std::io::{Read, Write};
    let sink = Sink::start(SinkOptions {
        max_connections: 8,
        idle_timeout: Duration::from_millis(300),
        ..SinkOptions::default()
    })
    .unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let idle: Vec<_> = (0..8)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(sink.addr()).unwrap();
            c.write_all(preface).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c
        })
        .collect();
    // Each is closed by the receiver (EOF, after its SETTINGS); a read
    // timeout here would mean it was kept.
    for mut c in idle {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
    }
    assert_eq!(sink.counts().idle_closed, 8);
    // A pipeline recording for longer than the timeout keeps its
    // connections, and everything arrives.
    let p = builder(&sink.endpoint()).start().unwrap();
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(1_200) {
        record(&p, 10);
        n += 10;
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((s.exported, s.failed.total()), (n, 0), "{s:?}");
    assert_eq!(sink.counts().spans, n);
    assert_eq!(
        sink.counts().idle_closed,
        8,
        "the pipeline's connections kept"
    );
}
