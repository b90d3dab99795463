//! What the bridge tests share: a receiver that decodes and keeps every
//! request, and a pipeline that loses nothing (Block) and sends promptly.

use std::time::Duration;

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{Pipeline, Policy};

/// The embedded receiver, decoding every request fully and keeping it.
pub fn keeping_sink() -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        ..SinkOptions::default()
    })
    .unwrap()
}

/// A pipeline to `sink` named `service`: one worker, 5 ms linger, Block.
pub fn pipeline(sink: &Sink, service: &str) -> Pipeline {
    Pipeline::builder()
        .endpoint(sink.endpoint())
        .service_name(service)
        .shards(1)
        .workers(1)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .unwrap()
}
