//! A span must carry a trace id and a span id (OTLP: "an ID with all
//! zeroes ... is considered invalid", and the field is required). Receivers
//! that check reject such spans, some (Langfuse) the whole request with a
//! 400 that is not retried, so one host bug would lose every span batched
//! with it.
//! otlpflow refuses the span at ingest instead, as `Invalid`, and counts
//! it; the spans around it are delivered. A root span (no parent) and a
//! log record without a trace stay valid.

mod support;
use support::keeping_sink;

use std::time::Duration;

use otlpflow::{DropReason, LogRecord, Pipeline, RecordError, Span, SpanKind, TemplateSpan};

fn good(name: &'static str) -> Span<'static> {
    Span {
        name,
        trace_id: [7; 16],
        span_id: [9; 8],
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..Default::default()
    }
}

#[test]
fn spans_without_a_trace_id_or_a_span_id_are_refused_as_invalid() {
    let sink = keeping_sink();
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .shards(1)
        .workers(1)
        .linger(Duration::from_millis(5))
        .start()
        .unwrap();
    let scope = p.scope("ids", "");
    let no_trace = Span {
        trace_id: [0; 16],
        ..good("no trace")
    };
    let no_span = Span {
        span_id: [0; 8],
        ..good("no span")
    };
    // Half an id is still an id.
    let mut half = [0; 16];
    half[15] = 1;
    let half_trace = Span {
        trace_id: half,
        span_id: [0, 0, 0, 0, 0, 0, 0, 1],
        ..good("half")
    };
    for bad in [&no_trace, &no_span] {
        assert_eq!(p.record_span(&scope, bad), Err(RecordError::Invalid));
    }
    p.record_span(&scope, &good("root")).unwrap();
    p.record_span(&scope, &half_trace).unwrap();
    let r = p.record_batch(&scope, &[good("batched"), no_trace, no_span]);
    assert_eq!((r.accepted, r.dropped), (1, 2));

    let t = p.template(&scope, "templated", SpanKind::Server, &[]);
    let from = TemplateSpan::from(&good(""));
    for bad in [
        TemplateSpan {
            trace_id: [0; 16],
            ..from
        },
        TemplateSpan {
            span_id: [0; 8],
            ..from
        },
    ] {
        assert_eq!(p.record_templated(&t, &bad), Err(RecordError::Invalid));
    }
    p.record_templated(&t, &from).unwrap();

    let receipt = p.record_acked(&scope, &[no_span, good("acked")]);
    let d = receipt.wait(Duration::from_secs(10)).expect("settled");
    assert_eq!((d.delivered, d.dropped[DropReason::Invalid]), (1, 1));

    // A log record without a trace is not a span: still taken.
    let log_scope = p.scope("logs", "");
    p.record_log(
        &log_scope,
        &LogRecord {
            time_unix_nano: 1,
            ..Default::default()
        },
    )
    .unwrap();

    let s = p.shutdown(Duration::from_secs(10)).unwrap();
    s.check_identity().unwrap();
    assert_eq!(s.dropped[DropReason::Invalid], 7);
    assert_eq!(s.exported, 6);
    let mut names = Vec::new();
    for req in sink.take_requests() {
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                for span in ss.spans {
                    assert_eq!((span.trace_id.len(), span.span_id.len()), (16, 8));
                    assert!(span.parent_span_id.is_empty(), "a root span");
                    names.push(span.name);
                }
            }
        }
    }
    names.sort();
    assert_eq!(names, ["acked", "batched", "half", "root", "templated"]);
}
