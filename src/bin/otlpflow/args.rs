//! The command line's arguments: the load every command shares, and the
//! values people write (protocols, sizes, concurrency).

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProtocolArg {
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompressionArg {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SignalArg {
    Traces,
    Logs,
    Metrics,
}

/// Which spans `--signal traces` records.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ShapeArg {
    /// The benchmark span (src/workload), the same every time but its ids.
    Bench,
    /// The benchmark span through its span template.
    Template,
    /// A varied mix: traces of eight spans, 24 operations, random ids and
    /// values (for measuring compression on realistic traffic).
    Varied,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PolicyArg {
    Block,
    Drop,
}

#[derive(Args, Clone)]
pub(crate) struct Load {
    /// Spans to record.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) spans: u64,
    /// Stop after this many seconds instead (then --spans is a cap only if
    /// given explicitly).
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Offer at most this many spans per second in total (paced).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Producer threads (default: one per CPU).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Grpc)]
    pub(crate) protocol: ProtocolArg,
    /// Use HTTP/2 (h2c) for http/protobuf instead of HTTP/1.1.
    #[arg(long)]
    pub(crate) http2: bool,
    /// A header for every export request, as K=V (repeatable). Checked
    /// after parsing (by `split_pair`), so that a malformed one is never
    /// echoed: its value is a credential more often than not.
    #[arg(long = "header")]
    pub(crate) headers: Vec<String>,
    /// Compression of requests.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub(crate) compression: CompressionArg,
    /// What producers do on a full ring.
    #[arg(long, value_enum, default_value_t = PolicyArg::Block)]
    pub(crate) policy: PolicyArg,
    /// Records per batch [default: the library's: 512, growing while the
    /// round trip is long and batches leave full].
    #[arg(long)]
    pub(crate) batch: Option<usize>,
    /// What to send: spans, log records or metric data points.
    #[arg(long, value_enum, default_value_t = SignalArg::Traces)]
    pub(crate) signal: SignalArg,
    /// Which spans to record (traces only).
    #[arg(long, value_enum, default_value_t = ShapeArg::Bench)]
    pub(crate) shape: ShapeArg,
    /// Cap on the bytes records hold in the pipeline, e.g. 16M.
    #[arg(long, value_parser = parse_size)]
    pub(crate) memory_budget: Option<u64>,
    /// Export requests in flight per worker: a number, or `adaptive`
    /// (AIMD between 1 and 256) [default: the library's: adaptive from 4,
    /// its ceiling bounded by the memory budget].
    #[arg(long, value_parser = parse_concurrency)]
    pub(crate) concurrency: Option<Concurrency>,
    /// Ingest limit in records per second (refusals counted as
    /// rate_limited; --rate paces the producers instead).
    #[arg(long)]
    pub(crate) rate_limit: Option<f64>,
    /// demo only: the receiver adds this latency to every request.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) sink_latency_ms: f64,
    /// demo only: the receiver serves this many requests at once and
    /// throttles the rest (RESOURCE_EXHAUSTED / HTTP 429).
    #[arg(long)]
    pub(crate) sink_max_concurrent: Option<usize>,
    /// Spool requests to this directory while the receiver does not
    /// answer, and replay them (and what an earlier run left) before
    /// exiting.
    #[arg(long)]
    pub(crate) spool_dir: Option<std::path::PathBuf>,
    /// The spool's size bound.
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    pub(crate) spool_max_bytes: u64,
    /// Any library setting by name, as NAME=VALUE (repeatable; the names
    /// of `otlpflow_config_set` and Python's keyword settings, README
    /// "Settings by name"), applied after the options above. Like
    /// --header, checked after parsing: a value may be a credential.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(crate) settings: Vec<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Clone, Copy)]
pub(crate) enum Concurrency {
    Fixed(usize),
    Adaptive,
}

pub(crate) fn parse_concurrency(s: &str) -> Result<Concurrency, String> {
    if s == "adaptive" {
        return Ok(Concurrency::Adaptive);
    }
    s.parse()
        .map(Concurrency::Fixed)
        .map_err(|_| format!("{s:?} is not a number or `adaptive`"))
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    otlpflow::parse_bytes(s)
        .ok_or_else(|| format!("{s:?} is not a size like 64M, 8MiB, 8MB, 512KiB or 1G"))
}

/// `NAME=VALUE`, split at the first `=`, for `--header` (`what`: "a
/// header") and `--set`. The error never shows the value: a header's or a
/// `header.<name>` setting's is a credential more often than not.
pub(crate) fn split_pair<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    s.split_once('=')
        .ok_or_else(|| format!("{what} must be NAME=VALUE (the value is not shown)"))
}
