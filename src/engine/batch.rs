//! Batches: records copied once out of the rings, grouped by scope, and
//! framed into an OTLP export request around the already-encoded records.
//!
//! The three OTLP export requests share one shape, with the same field
//! numbers: `Export*ServiceRequest { 1: Resource* { 1: resource,
//! 2: Scope* { 1: scope, 2: records..., 3: schema_url }, 3: schema_url } }`.
//! A batch keeps one buffer per scope whose first bytes are left free; when
//! the batch closes, the `Scope*` key and length are written right-aligned
//! into that headroom, so each scope buffer becomes one request chunk with no
//! further copy. The first scope's headroom also has room for the request's
//! head (the `Resource*` key, length and resource), so that a batch of one
//! scope, the common case, closes into one contiguous message: zstd then
//! compresses it in one call straight from the batch's buffer.

use std::time::Instant;

use bytes::Bytes;

use crate::record::wire;

/// Room at the front of a scope buffer for its key and length (a key byte
/// and a varint of at most 5 bytes for a length below 4 GiB).
const HEADROOM: usize = 8;
/// Field number of `records` inside `Scope*` (spans, log_records, metrics).
const RECORDS_FIELD: u32 = 2;
/// Field number of `Scope*` inside `Resource*`.
const SCOPE_FIELD: u32 = 2;
/// Field number of `Resource*` inside the request.
const RESOURCE_FIELD: u32 = 1;

struct ScopeBuf {
    tag: u32,
    /// `headroom` free bytes, the encoded scope field, then records.
    body: Vec<u8>,
    headroom: usize,
    /// Metric batches: points grouped by metric (kind, flags and head, the
    /// key), each group's points framed as `data_points`; written into
    /// `body` as one `Metric` per group when the batch closes.
    groups: Vec<(Vec<u8>, Vec<u8>)>,
    group_of: std::collections::HashMap<Vec<u8>, usize>,
}

/// A closed batch, ready to compress and send.
pub struct ClosedBatch {
    /// The request's first bytes: `Resource*` key, length and resource;
    /// empty when they are at the front of the first chunk.
    pub head: Vec<u8>,
    /// One chunk per scope: `Scope*` key, length and body (the first one
    /// after the head, when `head` is empty).
    pub chunks: Vec<Bytes>,
    /// Records in the request.
    pub items: u64,
    /// Length of the whole OTLP message.
    pub message_len: usize,
}

impl ClosedBatch {
    /// The message as slices, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        let mut v = Vec::with_capacity(1 + self.chunks.len());
        if !self.head.is_empty() {
            v.push(&self.head[..]);
        }
        v.extend(self.chunks.iter().map(|c| &c[..]));
        v
    }
}

/// The batch a worker is filling.
#[derive(Default)]
pub struct Batch {
    scopes: Vec<ScopeBuf>,
    /// `slot_of[tag]` is the index in `scopes` + 1, or 0.
    slot_of: Vec<u32>,
    items: usize,
    bytes: usize,
    opened: Option<Instant>,
    /// A record did not fit under the byte limit: the batch is full below
    /// the limit and goes as it is.
    closed: bool,
    /// Records are metric points to group (see `record::metric`).
    metrics: bool,
    /// The capacity a scope's body starts with: what the largest body of
    /// the last batch needed (64 KiB at first). Grown by doubling instead,
    /// a 2 MiB body was reallocated and copied five times over, and the
    /// copies cost more instructions per span than the copy out of the
    /// ring they repeat.
    body_capacity: usize,
    /// Room for the request's head at the front of the first scope's body:
    /// what the last batch's head needed (`FIRST_HEAD_ROOM` at first).
    head_room: usize,
}

/// A scope body's first capacity before any batch has left.
const FIRST_BODY_CAPACITY: usize = 64 * 1024;
/// Room for the head before any batch has left: a resource of a few dozen
/// attributes. A larger one is sent as a chunk of its own once, and the
/// batches after it leave room for it.
const FIRST_HEAD_ROOM: usize = 1024;

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch {
            head_room: FIRST_HEAD_ROOM,
            ..Batch::default()
        }
    }

    /// An empty batch of metric points, which it groups by metric.
    pub fn for_metrics() -> Batch {
        Batch {
            metrics: true,
            ..Batch::new()
        }
    }

    /// Records in the batch.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Encoded bytes in the batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Marks the batch full: the next record would take it past the byte
    /// limit.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Whether the batch should leave: `max_items` records, `byte_limit`
    /// bytes, or closed because the next record would not fit.
    pub fn is_full(&self, max_items: usize, byte_limit: usize) -> bool {
        self.items >= max_items || self.bytes >= byte_limit || self.closed
    }

    /// When the first record of this batch arrived.
    pub fn opened(&self) -> Option<Instant> {
        self.opened
    }

    /// Appends one encoded record under scope `tag`. `scope_field` gives the
    /// encoded `scope` field (key, length, `InstrumentationScope`) of a tag
    /// the batch has not seen yet. This is the one copy out of the ring.
    pub fn push(&mut self, tag: u32, record: &[u8], scope_field: impl FnOnce(u32) -> Bytes) {
        let t = tag as usize;
        if t >= self.slot_of.len() {
            self.slot_of.resize(t + 1, 0);
        }
        if self.slot_of[t] == 0 {
            let scope = scope_field(tag);
            let headroom = if self.scopes.is_empty() {
                HEADROOM + self.head_room
            } else {
                HEADROOM
            };
            let mut body =
                Vec::with_capacity(headroom + self.body_capacity.max(FIRST_BODY_CAPACITY));
            body.resize(headroom, 0);
            body.extend_from_slice(&scope);
            self.bytes += scope.len();
            self.scopes.push(ScopeBuf {
                tag,
                body,
                headroom,
                groups: Vec::new(),
                group_of: Default::default(),
            });
            self.slot_of[t] = self.scopes.len() as u32;
        }
        let scope = &mut self.scopes[self.slot_of[t] as usize - 1];
        if self.metrics {
            self.push_point(t, record);
            return;
        }
        let buf = &mut scope.body;
        let before = buf.len();
        wire::put_len_header(buf, RECORDS_FIELD, record.len());
        buf.extend_from_slice(record);
        self.bytes += buf.len() - before;
        self.items += 1;
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
    }

    fn push_point(&mut self, t: usize, record: &[u8]) {
        let scope = &mut self.scopes[self.slot_of[t] as usize - 1];
        // A record this crate wrote always splits; anything else is dropped
        // here rather than sent malformed (and is not counted as an item).
        let Some((key, point)) = crate::record::metric::split(record) else {
            debug_assert!(false, "malformed metric record");
            return;
        };
        let i = match scope.group_of.get(key) {
            Some(&i) => i,
            None => {
                scope.groups.push((key.to_vec(), Vec::new()));
                scope.group_of.insert(key.to_vec(), scope.groups.len() - 1);
                // The metric's own framing, counted once per group.
                self.bytes += key.len() + 16;
                scope.groups.len() - 1
            }
        };
        let points = &mut scope.groups[i].1;
        let before = points.len();
        wire::put_len_header(points, 1, point.len());
        points.extend_from_slice(point);
        self.bytes += points.len() - before;
        self.items += 1;
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
    }

    /// Closes the batch into a request around `resource_field` (the encoded
    /// `resource` field of `Resource*`), leaving the batch empty.
    pub fn take(&mut self, resource_field: &[u8]) -> ClosedBatch {
        // Each scope's key and length go right-aligned into its headroom.
        let mut bodies = Vec::with_capacity(self.scopes.len());
        let mut resource_body = resource_field.len();
        let mut largest = 0;
        for scope in self.scopes.drain(..) {
            self.slot_of[scope.tag as usize] = 0;
            let mut body = scope.body;
            largest = largest.max(body.len() - scope.headroom);
            for (key, points) in &scope.groups {
                crate::record::metric::write_metric(&mut body, key, points);
            }
            let body_len = body.len() - scope.headroom;
            let mut header = Vec::with_capacity(HEADROOM);
            wire::put_len_header(&mut header, SCOPE_FIELD, body_len);
            let start = scope.headroom - header.len();
            body[start..scope.headroom].copy_from_slice(&header);
            resource_body += body.len() - start;
            bodies.push((body, start));
        }
        let mut head = Vec::with_capacity(16 + resource_field.len());
        wire::put_len_header(&mut head, RESOURCE_FIELD, resource_body);
        head.extend_from_slice(resource_field);
        let message_len = head.len() + resource_body - resource_field.len();
        // The head in front of the first scope when it fits there.
        if let Some((body, start)) = bodies.first_mut() {
            if *start >= head.len() {
                *start -= head.len();
                body[*start..*start + head.len()].copy_from_slice(&head);
                head.clear();
            }
        }
        let chunks = bodies
            .into_iter()
            .map(|(body, start)| Bytes::from(body).slice(start..))
            .collect();
        // The next batch's bodies start where this one's ended (a little
        // over, for the metric framing and a batch one record longer), and
        // its first leaves room for this head.
        self.body_capacity = largest + largest / 8;
        self.head_room = 16 + resource_field.len();
        let items = self.items as u64;
        self.items = 0;
        self.bytes = 0;
        self.opened = None;
        self.closed = false;
        ClosedBatch {
            head,
            chunks,
            items,
            message_len,
        }
    }
}

/// Encodes the `resource` field of `Resource*` for a resource's attributes.
pub(crate) fn resource_field(attributes: &[(String, crate::record::OwnedValue)]) -> Vec<u8> {
    let mut body = Vec::new();
    crate::record::value::encode_owned_attributes(&mut body, 1, attributes);
    let mut out = Vec::with_capacity(body.len() + 8);
    wire::put_len_header(&mut out, 1, body.len());
    out.extend_from_slice(&body);
    out
}

/// Encodes the `scope` field of `Scope*` for an instrumentation scope.
pub(crate) fn scope_field(
    name: &str,
    version: &str,
    attributes: &[(String, crate::record::OwnedValue)],
) -> Vec<u8> {
    let mut body = Vec::new();
    if !name.is_empty() {
        wire::put_len_header(&mut body, 1, name.len());
        body.extend_from_slice(name.as_bytes());
    }
    if !version.is_empty() {
        wire::put_len_header(&mut body, 2, version.len());
        body.extend_from_slice(version.as_bytes());
    }
    crate::record::value::encode_owned_attributes(&mut body, 3, attributes);
    let mut out = Vec::with_capacity(body.len() + 8);
    wire::put_len_header(&mut out, 1, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `field` as a length-delimited field around `body`.
    fn len_field(field: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::put_len_header(&mut out, field, body.len());
        out.extend_from_slice(body);
        out
    }

    /// The request a batch of `scopes` (scope field, records) must close
    /// into, built field by field.
    fn expected(resource_field: &[u8], scopes: &[(Vec<u8>, Vec<Vec<u8>>)]) -> Vec<u8> {
        let mut resource_body = resource_field.to_vec();
        for (scope, records) in scopes {
            let mut body = scope.clone();
            for r in records {
                body.extend(len_field(RECORDS_FIELD, r));
            }
            resource_body.extend(len_field(SCOPE_FIELD, &body));
        }
        len_field(RESOURCE_FIELD, &resource_body)
    }

    fn joined(req: &ClosedBatch) -> Vec<u8> {
        req.slices().concat()
    }

    fn record(i: u8, len: usize) -> Vec<u8> {
        vec![i; len]
    }

    #[test]
    fn one_scope_closes_into_one_contiguous_message() {
        let resource = len_field(1, b"service.name=checkout");
        let scope = len_field(1, b"scope-a");
        let mut batch = Batch::new();
        let records: Vec<Vec<u8>> = (0..200).map(|i| record(i, 40 + i as usize)).collect();
        for r in &records {
            batch.push(7, r, |_| Bytes::from(scope.clone()));
        }
        let req = batch.take(&resource);
        assert!(req.head.is_empty(), "the head went in front of the scope");
        assert_eq!(req.chunks.len(), 1);
        assert_eq!(req.slices().len(), 1);
        let want = expected(&resource, &[(scope.clone(), records)]);
        assert_eq!(&req.chunks[0][..], &want[..]);
        assert_eq!(req.message_len, want.len());
        assert_eq!(req.items, 200);
    }

    #[test]
    fn several_scopes_put_the_head_before_the_first() {
        let resource = len_field(1, b"r");
        let (a, b) = (len_field(1, b"scope-a"), len_field(1, b"scope-b"));
        let mut batch = Batch::new();
        batch.push(1, &record(1, 10), |_| Bytes::from(a.clone()));
        batch.push(2, &record(2, 300), |_| Bytes::from(b.clone()));
        batch.push(1, &record(3, 20), |_| Bytes::from(a.clone()));
        let req = batch.take(&resource);
        assert!(req.head.is_empty());
        assert_eq!(req.chunks.len(), 2);
        let want = expected(
            &resource,
            &[
                (a.clone(), vec![record(1, 10), record(3, 20)]),
                (b.clone(), vec![record(2, 300)]),
            ],
        );
        assert_eq!(joined(&req), want);
        assert_eq!(req.message_len, want.len());
    }

    #[test]
    fn a_resource_larger_than_the_room_goes_apart_once() {
        // Past the first batch's room: a head of its own this time, and
        // room for it in the next batch.
        let resource = len_field(1, &vec![b'x'; FIRST_HEAD_ROOM + 500]);
        let scope = len_field(1, b"s");
        let mut batch = Batch::new();
        for round in 0..3u8 {
            batch.push(3, &record(round, 100), |_| Bytes::from(scope.clone()));
            let req = batch.take(&resource);
            let want = expected(&resource, &[(scope.clone(), vec![record(round, 100)])]);
            assert_eq!(joined(&req), want, "round {round}");
            assert_eq!(req.message_len, want.len());
            if round == 0 {
                assert!(!req.head.is_empty());
                assert_eq!(req.chunks.len(), 1);
            } else {
                assert!(req.head.is_empty(), "round {round}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

        /// Batches one after another, of any scopes and record sizes,
        /// around resources of any size (which the head's room learns
        /// from): each closes into exactly the request built field by field.
        #[test]
        fn any_batches_close_into_their_requests(
            batches in proptest::collection::vec(
                (0usize..3000, proptest::collection::vec((0u32..4, 0usize..700), 0..40)),
                1..6,
            )
        ) {
            let mut batch = Batch::new();
            for (round, (resource_len, pushes)) in batches.iter().enumerate() {
                let resource = len_field(1, &vec![b'r'; *resource_len]);
                let mut scopes: Vec<(u32, Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
                for (i, (tag, len)) in pushes.iter().enumerate() {
                    let scope = len_field(1, format!("scope-{tag}").as_bytes());
                    let r = record((round * 64 + i) as u8, *len);
                    batch.push(*tag, &r, |_| Bytes::from(scope.clone()));
                    match scopes.iter_mut().find(|(t, _, _)| t == tag) {
                        Some((_, _, records)) => records.push(r),
                        None => scopes.push((*tag, scope, vec![r])),
                    }
                }
                let req = batch.take(&resource);
                let want: Vec<(Vec<u8>, Vec<Vec<u8>>)> =
                    scopes.into_iter().map(|(_, s, r)| (s, r)).collect();
                let want = expected(&resource, &want);
                proptest::prop_assert_eq!(joined(&req), want.clone());
                proptest::prop_assert_eq!(req.message_len, want.len());
                proptest::prop_assert_eq!(req.items, pushes.len() as u64);
                proptest::prop_assert!(req.chunks.iter().all(|c| !c.is_empty()));
            }
        }
    }

    #[test]
    fn an_empty_batch_is_a_head_alone() {
        let resource = len_field(1, b"r");
        let req = Batch::new().take(&resource);
        assert!(req.chunks.is_empty());
        assert_eq!(joined(&req), len_field(RESOURCE_FIELD, &resource));
        assert_eq!(req.message_len, req.head.len());
    }
}
