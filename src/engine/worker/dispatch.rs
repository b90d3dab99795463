//! Dispatch: close a signal's batch, frame and compress it, wait for a
//! request slot, and start its export task.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::export_task::{export_task, ExportRequest};
use super::Worker;
use crate::config::{Compression, RetryQueue};
use crate::engine::batch::ClosedBatch;
use crate::engine::receipt::Fate;
use crate::export::Exporter;
use crate::otlp::compress::Compressor;

use crate::stats::FailReason;

impl Worker {
    /// Closes every non-empty batch and sends each as its lane's request.
    pub(super) async fn dispatch(&mut self) {
        for lane in 0..self.batches.len() {
            if !self.batches[lane].is_empty() {
                self.dispatch_one(lane).await;
            }
        }
    }

    /// Sends the batches that are full (`only_full`) or all non-empty ones
    /// whose endpoint has a free request slot; with several endpoints, one
    /// that is slow or down neither cuts the others' batches short nor
    /// holds them back. Returns whether it sent anything.
    pub(super) async fn dispatch_ready(&mut self, only_full: bool) -> bool {
        let mut sent = false;
        for lane in 0..self.batches.len() {
            let linger = self.inner.config.linger;
            let ready = if only_full {
                self.is_full(lane)
            } else {
                self.batches[lane]
                    .opened()
                    .is_some_and(|t| t.elapsed() >= linger)
            };
            // A signal with one endpoint waits for its slot (evicting under
            // DropOldest) as it always did; with several, a lane without a
            // free slot is passed over.
            let signal = self.table.exports[lane].signal;
            let alone = self.table.alone(signal);
            if ready && (alone || self.shared.has_slot(lane)) {
                self.dispatch_one(lane).await;
                sent = true;
            }
        }
        sent
    }

    /// Waits until a request ends (a slot frees), a producer or control
    /// call wakes the worker, or `linger` passes: what a worker does when
    /// every ready batch waits for its endpoint's slots.
    pub(super) async fn wait_for_slot(&self) {
        let linger = self
            .inner
            .config
            .linger
            .max(std::time::Duration::from_millis(1));
        tokio::select! {
            _ = self.shared.slot_freed.notified() => {}
            _ = self.inner.workers[self.idx].notify.notified() => {}
            _ = tokio::time::sleep(linger) => {}
        }
    }

    /// Closes one lane's batch, frames and compresses it, waits for an
    /// in-flight slot, and starts the export task.
    async fn dispatch_one(&mut self, lane: usize) {
        let full = self.is_full(lane);
        let signal = self.table.exports[lane].signal;
        let req = self.batches[lane].take(&self.inner.resource_field.read());
        let mut receipts = std::mem::take(&mut self.shares[lane]);
        let items = req.items;
        // Bytes held against the memory budget; the export task takes them
        // over.
        let mut charge = std::mem::take(&mut self.charged[lane]);
        let counters = &self.inner.workers[self.idx].counters;
        let framed = frame(
            &mut self.compressors[lane],
            &self.shared.exporters.borrow()[lane],
            &req,
        );
        let chunks = match framed {
            Ok(c) => c,
            Err(e) => {
                counters.fail(FailReason::Permanent, req.items);
                let message = format!("compression: {e}");
                receipts.settle(Fate::Failed(FailReason::Permanent, Some(&message)));
                *self.inner.last_error.lock() = Some(message);
                self.inner.release_memory(charge);
                return;
            }
        };
        let wire: usize = chunks.iter().map(|c| c.len()).sum();
        let mut tally = self.shared.batches.get();
        tally.sent += 1;
        tally.full += u64::from(full);
        tally.records += items;
        tally.raw += req.message_len as u64;
        tally.wire += wire as u64;
        self.shared.batches.set(tally);
        if let (Some(b), true) = (
            &self.inner.budget,
            self.compressors[lane].kind() != Compression::None,
        ) {
            // The compressed copy replaces the batch's buffers (dropped with
            // `req` below): hold its size instead.
            b.force(wire as u64);
            self.inner.release_memory(charge);
            charge = wire as u64;
        }
        counters
            .bytes_raw
            .fetch_add(req.message_len as u64, Ordering::Relaxed);
        drop(req);
        counters
            .bytes_wire
            .fetch_add(wire as u64, Ordering::Relaxed);
        // Wait for a request slot. Under DropOldest, a request waiting for
        // its retry makes room for this fresh one.
        // Shutdown's deadline ends the wait: the batch is a shutdown loss,
        // and the worker goes on to abandon the rest on time.
        while !self.shared.has_slot(lane) {
            if self.inner.config.flow.retry_queue == RetryQueue::DropOldest {
                self.shared.evict_oldest(Some(lane));
            }
            let stop = self.inner.stop_deadline();
            let far = crate::clock::deadline_after(std::time::Duration::from_secs(3600));
            tokio::select! {
                _ = self.shared.slot_freed.notified() => {}
                _ = tokio::time::sleep_until(stop.unwrap_or(far).into()) => {}
                _ = self.inner.workers[self.idx].notify.notified() => {}
            }
            if self
                .inner
                .stop_deadline()
                .is_some_and(|d| std::time::Instant::now() >= d)
            {
                counters.fail(FailReason::Shutdown, items);
                receipts.settle(Fate::Failed(FailReason::Shutdown, None));
                self.inner.release_memory(charge);
                return;
            }
        }
        let n = counters.in_flight_requests.fetch_add(1, Ordering::Relaxed) as usize + 1;
        self.shared.lane_in_flight.borrow_mut()[lane] += 1;
        if let Some(a) = self.shared.aimd.borrow_mut().as_mut() {
            a.on_send(n);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.shared.outstanding.borrow_mut().insert(seq, items);
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let shared = self.shared.clone();
        let seed = self.rng;
        let request = ExportRequest {
            samples: std::mem::take(&mut self.samples),
            signal,
            lane,
            seq,
            chunks,
            items,
            wire: wire as u64,
            charge,
            receipts,
        };
        tokio::task::spawn_local(async move {
            export_task(&shared, request, seed).await;
            shared.outstanding.borrow_mut().remove(&seq);
            let w = &shared.inner.workers[shared.idx];
            w.counters
                .in_flight_requests
                .fetch_sub(1, Ordering::Relaxed);
            shared.lane_in_flight.borrow_mut()[lane] -= 1;
            shared.slot_freed.notify_one();
            // Let the worker re-check a pending flush.
            w.notify.notify_one();
        });
    }
}

/// Frames a request for the exporter's protocol (a gRPC length prefix, or
/// nothing for OTLP/HTTP), compressing it if configured. Uncompressed, the
/// scope chunks are sent as they are, without joining them.
fn frame(
    compressor: &mut Compressor,
    exporter: &Exporter,
    req: &ClosedBatch,
) -> std::io::Result<Vec<Bytes>> {
    let prefix = exporter.prefix_len();
    if compressor.kind() == Compression::None {
        let mut head = vec![0; prefix + req.head.len()];
        exporter.write_prefix(&mut head[..prefix], req.message_len, false);
        head[prefix..].copy_from_slice(&req.head);
        let mut chunks = Vec::with_capacity(1 + req.chunks.len());
        // Nothing at all for OTLP/HTTP when the head is in the first chunk.
        if !head.is_empty() {
            chunks.push(Bytes::from(head));
        }
        chunks.extend(req.chunks.iter().cloned());
        return Ok(chunks);
    }
    let mut out = compressor.compress(&req.slices(), req.message_len, prefix)?;
    let len = out.len() - prefix;
    exporter.write_prefix(&mut out[..prefix], len, true);
    Ok(vec![Bytes::from(out)])
}
