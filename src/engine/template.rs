//! Recording through span templates: a [`SpanShape`] bound to a scope, and
//! the record path for the spans made from it.

use super::{Pipeline, Scope};
use crate::error::RecordError;
use crate::record::wire::write_into;
use crate::record::{KeyValue, Signal, SpanKind, SpanShape, TemplateSpan};

/// A kind of span whose name, kind and static attributes were encoded once,
/// bound to the scope that records it. Made by [`Pipeline::template`];
/// record spans from it with [`Pipeline::record_templated`]. `Send + Sync`:
/// share one template between the threads that record its spans.
#[derive(Debug, Clone)]
pub struct SpanTemplate {
    scope: Scope,
    shape: SpanShape,
}

impl SpanTemplate {
    /// The scope its spans are recorded under.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Its name, kind and static attributes, encoded.
    pub fn shape(&self) -> &SpanShape {
        &self.shape
    }
}

impl Pipeline {
    /// Encodes `name`, `kind` and the static `attributes` of a kind of span
    /// once, for `scope`. Spans recorded through the template carry them
    /// before their own attributes, exactly as if `record_span` had been
    /// given them all.
    pub fn template(
        &self,
        scope: &Scope,
        name: &str,
        kind: SpanKind,
        attributes: &[KeyValue<'_>],
    ) -> SpanTemplate {
        SpanTemplate {
            scope: *scope,
            shape: SpanShape::new(name, kind, attributes),
        }
    }

    /// Records one finished span made from `template`: its ids, times,
    /// status, events, links and dynamic attributes are encoded, the rest is
    /// copied. Refusals and counting are those of `record_span` (a template
    /// of another pipeline is refused as `InvalidScope`).
    #[inline]
    pub fn record_templated(
        &self,
        template: &SpanTemplate,
        span: &TemplateSpan<'_>,
    ) -> Result<(), RecordError> {
        let shape = &template.shape;
        // One conversion serves the encoder (and the size pass, if needed).
        let span = span.as_span();
        if !span.has_ids() {
            return Err(self.refuse_invalid(Signal::Traces));
        }
        self.engine().record_encoded(
            &template.scope,
            Signal::Traces,
            || shape.len_of(&span),
            |buf, scratch| write_into(buf, scratch, |w| shape.encode_fields(&span, w)),
        )
    }
}
