//! One flow's byte stream: sequence numbers in, framed messages out.
//!
//! The policy (trimming, the held queue, giving up a gap, dropping what
//! cannot be framed) is described in the parent module; this is its
//! mechanics for one direction of one connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{Limits, Stats};
use crate::sensor::framing::{self, Frame};

/// What one direction of a connection holds between segments.
#[derive(Debug)]
pub(super) struct Flow {
    /// Sequence number of the next byte expected.
    pub(super) next_seq: u32,
    /// The initial sequence number, if the SYN was seen.
    pub(super) isn: Option<u32>,
    /// In-order bytes not yet framed.
    pub(super) buf: BytesMut,
    /// Segments beyond a gap: (sequence number, data).
    pub(super) held: Vec<(u32, Bytes)>,
    /// Key of this flow in the activity index.
    pub(super) touched: (Duration, u64),
}

impl Flow {
    /// Bytes held: unframed plus out-of-order.
    pub(super) fn footprint(&self) -> usize {
        self.buf.len() + self.held.iter().map(|(_, d)| d.len()).sum::<usize>()
    }

    /// Drops unframed and held data (the stream resumes later).
    pub(super) fn clear(&mut self) {
        self.buf = BytesMut::new();
        self.held.clear();
    }
}

/// Signed distance from `from` to `to` in sequence space.
fn seq_distance(from: u32, to: u32) -> i64 {
    i64::from(to.wrapping_sub(from) as i32)
}

/// Takes in the data of one segment starting at `seq`.
pub(super) fn accept(
    flow: &mut Flow,
    limits: &Limits,
    stats: &mut Stats,
    seq: u32,
    payload: &[u8],
    out: &mut Vec<Bytes>,
) {
    let ahead = seq_distance(flow.next_seq, seq);
    let window = i64::try_from(limits.max_flow_buffer).unwrap_or(i64::MAX);
    if ahead > window {
        // Far beyond anything we could hold: the gap will not fill.
        stats.gaps += 1;
        flow.clear();
        flow.next_seq = seq;
    } else if ahead > 0 {
        stats.out_of_order += 1;
        flow.held.push((seq, Bytes::copy_from_slice(payload)));
        if flow.held.len() > limits.max_out_of_order || flow.footprint() > limits.max_flow_buffer {
            resume_after_gap(flow, stats);
            drain_held(flow, limits, stats, out);
        }
        return;
    }
    if !append(flow, seq, payload) {
        stats.retransmissions += 1;
        return;
    }
    drain_held(flow, limits, stats, out);
}

/// Appends what of `data` (starting at `seq`, not beyond `next_seq`) is new;
/// false if nothing is.
fn append(flow: &mut Flow, seq: u32, data: &[u8]) -> bool {
    let seen = usize::try_from(-seq_distance(flow.next_seq, seq)).unwrap_or(usize::MAX);
    let Some(fresh) = data.get(seen..).filter(|f| !f.is_empty()) else {
        return false;
    };
    flow.buf.extend_from_slice(fresh);
    // A segment is below 2^32 bytes (64 KiB with IP's length fields).
    flow.next_seq = flow.next_seq.wrapping_add(fresh.len() as u32);
    true
}

/// Gives up the missing data: drops the partial message and continues at
/// the earliest held segment.
fn resume_after_gap(flow: &mut Flow, stats: &mut Stats) {
    stats.gaps += 1;
    let next = flow.next_seq;
    let earliest = flow
        .held
        .iter()
        .map(|(seq, _)| *seq)
        .min_by_key(|&seq| seq_distance(next, seq));
    flow.buf = BytesMut::new();
    if let Some(seq) = earliest {
        flow.next_seq = seq;
    }
}

/// Frames the buffer, then appends and frames each held segment the stream
/// has reached. Framing after every segment keeps a resynchronisation (which
/// drops the buffer) from taking the segments behind it along.
fn drain_held(flow: &mut Flow, limits: &Limits, stats: &mut Stats, out: &mut Vec<Bytes>) {
    extract(flow, limits, stats, out);
    while let Some(i) = flow
        .held
        .iter()
        .position(|(seq, _)| seq_distance(flow.next_seq, *seq) <= 0)
    {
        let (seq, data) = flow.held.swap_remove(i);
        if append(flow, seq, &data) {
            extract(flow, limits, stats, out);
        } else {
            stats.retransmissions += 1;
        }
    }
}

/// Cuts the complete messages off the front of the flow's buffer.
fn extract(flow: &mut Flow, limits: &Limits, stats: &mut Stats, out: &mut Vec<Bytes>) {
    loop {
        match framing::frame_with(&flow.buf, &limits.frame) {
            Frame::Complete(len) if len <= flow.buf.len() => {
                out.push(flow.buf.split_to(len).freeze());
            }
            Frame::Keepalive(len) if len <= flow.buf.len() => {
                stats.keepalives += 1;
                let _ = flow.buf.split_to(len);
            }
            Frame::Partial => break,
            Frame::Invalid(_) | Frame::Complete(_) | Frame::Keepalive(_) => {
                stats.invalid_frames += 1;
                flow.buf = BytesMut::new();
                break;
            }
        }
    }
    if flow.buf.is_empty() {
        // Free the allocation: an idle flow holds no memory.
        flow.buf = BytesMut::new();
    } else if flow.footprint() > limits.max_flow_buffer {
        stats.overflows += 1;
        flow.clear();
    }
}
