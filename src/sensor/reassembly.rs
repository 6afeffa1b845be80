//! TCP streams -> whole SIP messages, for a passive observer.
//!
//! The sensor sees both directions of every connection but takes part in
//! none, so it cannot ask for anything again: it rebuilds each direction
//! (a flow, keyed by source and destination address and port) from what
//! passes, cuts the byte stream into messages with [`framing`](super::framing), and hands
//! them out in stream order.
//!
//! Sequence numbers decide what is new (all arithmetic wraps at 2^32):
//! - A SYN sets the initial sequence number; the first data byte follows it.
//!   A flow first seen mid-stream (the sensor started late, or the flow was
//!   evicted) starts at its first data segment; the framing's start-line
//!   check throws away the tail of a message it joined in the middle.
//! - Bytes already received (retransmissions, overlapping segments) are
//!   trimmed off, so they never produce a message twice.
//! - A segment beyond a gap is held in a small queue (at most
//!   [`Limits::max_out_of_order`] segments) until the gap fills. When the
//!   queue is full, or the gap is larger than a flow's buffer, the missing
//!   data is given up: the partial message is dropped and the stream resumes
//!   at the first held segment (counted in [`Stats::gaps`]).
//! - FIN and RST end the flow (after a FIN's own data); whatever partial
//!   message it held is dropped. Flows idle for [`Limits::idle_timeout`]
//!   expire; time is the caller's (capture timestamps), there is no clock.
//!
//! Everything an attacker can send is bounded: a flow's unframed bytes plus
//! its held segments ([`Limits::max_flow_buffer`]; past it the flow's data is
//! dropped, an overflow), the sum over all flows
//! ([`Limits::max_total_buffer`]) and the number of flows
//! ([`Limits::max_flows`]). When either global cap is hit the least recently
//! active flow is evicted, rather than new flows refused: refusing would let
//! whoever filled the table first blind the sensor to every new connection,
//! while an evicted flow just resumes as a mid-stream pickup. The caps count
//! bytes held, not allocator overhead, and are checked once the segment is
//! taken in, so one segment's worth may pass them for the length of a call.
//! A stream that cannot be framed (garbage, oversized) is resynchronised by
//! dropping its buffer, never by buffering more.
//!
//! Only plaintext ports should be fed in: TLS is not decrypted.

use std::collections::{BTreeMap, HashMap};

// Randomly seeded foldhash: fast on flow keys, not predictable by senders.
use foldhash::fast::RandomState;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::framing::FrameLimits;
use super::packet::{Packet, TcpSegment, Transport};

mod flow;

use flow::{Flow, accept};

/// One direction of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Sender's address and port.
    pub src: SocketAddr,
    /// Receiver's address and port.
    pub dst: SocketAddr,
}

impl FlowKey {
    /// The flow a packet belongs to.
    pub fn of(packet: &Packet<'_>) -> FlowKey {
        FlowKey {
            src: SocketAddr::new(packet.src, packet.src_port),
            dst: SocketAddr::new(packet.dst, packet.dst_port),
        }
    }
}

/// Caps on what reassembly holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unframed bytes plus held out-of-order bytes, per flow.
    pub max_flow_buffer: usize,
    /// The same, summed over all flows.
    pub max_total_buffer: usize,
    /// Flows tracked at once.
    pub max_flows: usize,
    /// Out-of-order segments held per flow.
    pub max_out_of_order: usize,
    /// A flow with no segment for this long is forgotten.
    pub idle_timeout: Duration,
    /// Caps on one message.
    pub frame: FrameLimits,
}

impl Default for Limits {
    /// A flow holds the largest message the framing accepts (80 KiB); 16 MiB
    /// and 10,000 flows in all; 8 held segments; 2 minutes idle.
    fn default() -> Self {
        let frame = FrameLimits::default();
        Limits {
            max_flow_buffer: frame.max_message(),
            max_total_buffer: 16 * 1024 * 1024,
            max_flows: 10_000,
            max_out_of_order: 8,
            idle_timeout: Duration::from_secs(120),
            frame,
        }
    }
}

/// Counters, for the console's report and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments pushed.
    pub segments: u64,
    /// SIP messages handed out.
    pub messages: u64,
    /// Keepalive runs (CRLFCRLF pings, CRLF pongs) dropped.
    pub keepalives: u64,
    /// Flows started (SYN or mid-stream).
    pub flows_opened: u64,
    /// Flows ended by FIN or RST.
    pub flows_closed: u64,
    /// Flows forgotten after the idle timeout.
    pub flows_expired: u64,
    /// Flows dropped to stay within the flow count or the total buffer.
    pub evictions: u64,
    /// A flow's buffer over its cap: its data dropped.
    pub overflows: u64,
    /// Unframeable stream data dropped (garbage, oversized message).
    pub invalid_frames: u64,
    /// Segments holding nothing new (retransmissions).
    pub retransmissions: u64,
    /// Segments held because they arrived beyond a gap.
    pub out_of_order: u64,
    /// Gaps given up on: the stream resumed after missing data.
    pub gaps: u64,
}

/// Per-flow TCP reassembly and SIP framing.
#[derive(Debug)]
pub struct Reassembler {
    limits: Limits,
    flows: HashMap<FlowKey, Flow, RandomState>,
    /// Flows by last activity, oldest first: eviction and expiry order.
    activity: BTreeMap<(Duration, u64), FlowKey>,
    serial: u64,
    /// Sum of the flows' footprints.
    buffered: usize,
    stats: Stats,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(Limits::default())
    }
}

impl Reassembler {
    /// An empty reassembler with these caps.
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            flows: HashMap::default(),
            activity: BTreeMap::new(),
            serial: 0,
            buffered: 0,
            stats: Stats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The caps in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Flows tracked now.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Bytes held now over all flows (unframed plus out-of-order).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Bytes one flow holds now, if it is tracked.
    pub fn flow_buffered(&self, key: &FlowKey) -> Option<usize> {
        self.flows.get(key).map(Flow::footprint)
    }

    /// [`Reassembler::push`] for a decoded packet; UDP gives nothing.
    pub fn push_packet(&mut self, now: Duration, packet: &Packet<'_>) -> Vec<Bytes> {
        match packet.transport {
            Transport::Tcp(segment) => self.push(now, FlowKey::of(packet), segment, packet.payload),
            Transport::Udp => Vec::new(),
        }
    }

    /// Takes in one segment seen at `now`; returns the SIP messages it
    /// completed, in stream order.
    pub fn push(
        &mut self,
        now: Duration,
        key: FlowKey,
        segment: TcpSegment,
        payload: &[u8],
    ) -> Vec<Bytes> {
        self.stats.segments += 1;
        self.expire(now);
        if segment.rst {
            if self.remove(&key) {
                self.stats.flows_closed += 1;
            }
            return Vec::new();
        }
        let data_seq = if segment.syn {
            segment.seq.wrapping_add(1)
        } else {
            segment.seq
        };
        if !self.flows.contains_key(&key) {
            if payload.is_empty() && !segment.syn {
                // A bare ACK or FIN of a flow we don't follow: nothing to keep.
                return Vec::new();
            }
            self.open(key, data_seq, segment.syn.then_some(segment.seq));
        }
        let mut out = Vec::new();
        self.touch(&key, now);
        if let Some(flow) = self.flows.get_mut(&key) {
            let before = flow.footprint();
            if segment.syn && flow.isn != Some(segment.seq) {
                // A new connection on the same addresses and ports.
                flow.clear();
                flow.next_seq = data_seq;
                flow.isn = Some(segment.seq);
            }
            if !payload.is_empty() {
                accept(
                    flow,
                    &self.limits,
                    &mut self.stats,
                    data_seq,
                    payload,
                    &mut out,
                );
            }
            self.buffered = self.buffered - before + flow.footprint();
        }
        if segment.fin && self.remove(&key) {
            self.stats.flows_closed += 1;
        }
        while self.buffered > self.limits.max_total_buffer && self.evict_oldest() {}
        self.stats.messages += out.len() as u64;
        out
    }

    /// Forgets flows idle for the timeout as of `now`; returns how many.
    /// [`Reassembler::push`] calls it too.
    pub fn expire(&mut self, now: Duration) -> usize {
        let mut expired = 0;
        while let Some((&(last, _), &key)) = self.activity.first_key_value() {
            if now.saturating_sub(last) < self.limits.idle_timeout {
                break;
            }
            self.remove(&key);
            expired += 1;
        }
        self.stats.flows_expired += expired as u64;
        expired
    }

    fn open(&mut self, key: FlowKey, next_seq: u32, isn: Option<u32>) {
        while self.flows.len() >= self.limits.max_flows.max(1) && self.evict_oldest() {}
        self.serial += 1;
        let touched = (Duration::ZERO, self.serial);
        self.activity.insert(touched, key);
        self.flows.insert(
            key,
            Flow {
                next_seq,
                isn,
                buf: BytesMut::new(),
                held: Vec::new(),
                touched,
            },
        );
        self.stats.flows_opened += 1;
    }

    fn touch(&mut self, key: &FlowKey, now: Duration) {
        if let Some(flow) = self.flows.get_mut(key) {
            self.activity.remove(&flow.touched);
            self.serial += 1;
            flow.touched = (now, self.serial);
            self.activity.insert(flow.touched, *key);
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.activity.pop_first() else {
            return false;
        };
        self.remove(&key);
        self.stats.evictions += 1;
        true
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        let Some(flow) = self.flows.remove(key) else {
            return false;
        };
        self.activity.remove(&flow.touched);
        self.buffered -= flow.footprint();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::framing::tests::{ACK, INVITE, REGISTER, UNAUTHORIZED};
    use proptest::prelude::*;

    impl Reassembler {
        /// The accounting matches the flows and the caps hold.
        fn check_invariants(&self) {
            let sum: usize = self.flows.values().map(Flow::footprint).sum();
            assert_eq!(self.buffered, sum);
            assert_eq!(self.flows.len(), self.activity.len());
            assert!(self.flows.len() <= self.limits.max_flows);
            assert!(self.buffered <= self.limits.max_total_buffer);
            for flow in self.flows.values() {
                assert!(flow.footprint() <= self.limits.max_flow_buffer);
                assert!(flow.held.len() <= self.limits.max_out_of_order);
            }
        }
    }

    fn key(port: u16) -> FlowKey {
        FlowKey {
            src: SocketAddr::from(([203, 0, 113, 14], port)),
            dst: SocketAddr::from(([203, 0, 113, 1], 5060)),
        }
    }

    fn data(seq: u32) -> TcpSegment {
        TcpSegment {
            seq,
            syn: false,
            fin: false,
            rst: false,
        }
    }

    fn syn(seq: u32) -> TcpSegment {
        TcpSegment {
            syn: true,
            ..data(seq)
        }
    }

    /// Real messages with keepalives between them, and what must come out.
    fn stream() -> (Vec<u8>, Vec<&'static [u8]>) {
        let messages = vec![REGISTER, UNAUTHORIZED, INVITE, ACK, REGISTER];
        let mut bytes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            bytes.extend_from_slice(m);
            if i % 2 == 1 {
                bytes.extend_from_slice(b"\r\n\r\n");
            }
        }
        (bytes, messages)
    }

    const ISN: u32 = u32::MAX - 700; // the stream wraps the sequence space

    /// Pushes `segments` (offset into `bytes`, length) after a SYN.
    fn run(r: &mut Reassembler, bytes: &[u8], segments: &[(usize, usize)]) -> Vec<Bytes> {
        let mut out = r.push(Duration::ZERO, key(1), syn(ISN), b"");
        for &(offset, len) in segments {
            let chunk = bytes.get(offset..offset + len).expect("segment in stream");
            let seq = ISN.wrapping_add(1).wrapping_add(offset as u32);
            out.extend(r.push(Duration::ZERO, key(1), data(seq), chunk));
            r.check_invariants();
        }
        out
    }

    fn cuts_to_segments(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % len).filter(|&c| c > 0).collect();
        points.push(0);
        points.push(len);
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| (w[0], w[1] - w[0])).collect()
    }

    #[test]
    fn one_segment_many_messages() {
        let (bytes, expected) = stream();
        let mut r = Reassembler::default();
        let out = run(&mut r, &bytes, &[(0, bytes.len())]);
        assert_eq!(out, expected);
        assert_eq!(r.stats().messages, 5);
        assert_eq!(r.stats().keepalives, 2);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn split_at_every_offset() {
        let (bytes, expected) = stream();
        for cut in 1..bytes.len() {
            let mut r = Reassembler::default();
            let out = run(&mut r, &bytes, &[(0, cut), (cut, bytes.len() - cut)]);
            assert_eq!(out, expected, "cut at {cut}");
        }
    }

    #[test]
    fn retransmissions_and_overlaps_are_trimmed() {
        let (bytes, expected) = stream();
        let mut r = Reassembler::default();
        let segments = [
            (0, 300),
            (0, 300),
            (100, 400),
            (450, 10),
            (200, 1000),
            (1200, bytes.len() - 1200),
            (0, bytes.len()),
        ];
        let out = run(&mut r, &bytes, &segments);
        assert_eq!(out, expected);
        assert_eq!(r.stats().retransmissions, 3);
    }

    #[test]
    fn out_of_order_segments_wait_for_the_gap() {
        let (bytes, expected) = stream();
        let mut r = Reassembler::default();
        let segments = [
            (0, 100),
            (300, 500),
            (100, 200),
            (1200, bytes.len() - 1200),
            (800, 400),
        ];
        let out = run(&mut r, &bytes, &segments);
        assert_eq!(out, expected);
        assert_eq!(r.stats().out_of_order, 2);
        assert_eq!(r.stats().gaps, 0);
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up() {
        let limits = Limits {
            max_out_of_order: 2,
            ..Limits::default()
        };
        let mut r = Reassembler::new(limits);
        let mut bytes = REGISTER.to_vec();
        bytes.extend_from_slice(INVITE);
        bytes.extend_from_slice(ACK);
        bytes.extend_from_slice(REGISTER);
        let (invite, ack) = (REGISTER.len(), REGISTER.len() + INVITE.len());
        let register2 = ack + ACK.len();
        // The INVITE's first 50 bytes are lost; three segments wait behind it.
        let segments = [
            (0, invite),
            (invite + 50, INVITE.len() - 50),
            (ack, ACK.len()),
            (register2, REGISTER.len()),
        ];
        let out = run(&mut r, &bytes, &segments);
        assert_eq!(out, vec![REGISTER, ACK, REGISTER]);
        assert_eq!(r.stats().gaps, 1);
        assert_eq!(r.stats().invalid_frames, 1, "the INVITE's tail is dropped");
    }

    #[test]
    fn mid_stream_pickup_resynchronises() {
        let mut r = Reassembler::default();
        let half = INVITE.len() / 2;
        let tail = INVITE.get(half..).expect("tail");
        assert!(r.push(Duration::ZERO, key(2), data(5000), tail).is_empty());
        let seq = 5000 + tail.len() as u32;
        let out = r.push(Duration::ZERO, key(2), data(seq), REGISTER);
        assert_eq!(out, vec![REGISTER]);
        assert_eq!(r.stats().invalid_frames, 1);
    }

    #[test]
    fn garbage_is_dropped_not_buffered() {
        let mut r = Reassembler::default();
        let mut seq = 1;
        for _ in 0..1000 {
            let garbage = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
            assert!(
                r.push(Duration::ZERO, key(3), data(seq), &garbage)
                    .is_empty()
            );
            seq += garbage.len() as u32;
            assert_eq!(r.buffered_bytes(), 0);
        }
        assert_eq!(r.push(Duration::ZERO, key(3), data(seq), ACK), vec![ACK]);
        assert_eq!(r.stats().invalid_frames, 1000);
    }

    #[test]
    fn a_flow_over_its_cap_overflows() {
        let frame = FrameLimits {
            max_header: 1000,
            max_body: 100_000,
        };
        let limits = Limits {
            max_flow_buffer: 2000,
            frame,
            ..Limits::default()
        };
        let mut r = Reassembler::new(limits);
        let big = b"MESSAGE sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n";
        r.push(Duration::ZERO, key(4), data(0), big);
        r.push(
            Duration::ZERO,
            key(4),
            data(big.len() as u32),
            &[b'x'; 1999],
        );
        assert_eq!(r.stats().overflows, 1);
        assert_eq!(r.buffered_bytes(), 0);
        r.check_invariants();
    }

    #[test]
    fn fin_rst_and_idle_end_flows() {
        let mut r = Reassembler::default();
        let fin = TcpSegment {
            fin: true,
            ..data(0)
        };
        let half = REGISTER.get(..100).expect("half");
        assert_eq!(r.push(Duration::ZERO, key(5), data(0), half).len(), 0);
        assert_eq!(
            r.push(Duration::ZERO, key(6), fin, REGISTER),
            vec![REGISTER]
        );
        r.push(Duration::ZERO, key(7), syn(9), b"");
        assert_eq!(r.flow_count(), 2);
        r.push(
            Duration::ZERO,
            key(7),
            TcpSegment {
                rst: true,
                ..data(10)
            },
            b"",
        );
        assert_eq!(r.flow_count(), 1);
        assert_eq!(r.stats().flows_closed, 2);
        // A bare ACK of an unknown flow starts nothing.
        r.push(Duration::from_secs(1), key(8), data(1), b"");
        assert_eq!(r.flow_count(), 1);
        let idle = r.limits().idle_timeout;
        assert_eq!(r.expire(idle - Duration::from_millis(1)), 0);
        assert_eq!(r.expire(idle), 1);
        assert_eq!((r.flow_count(), r.buffered_bytes()), (0, 0));
        assert_eq!(r.stats().flows_expired, 1);
    }

    #[test]
    fn a_new_syn_restarts_the_flow() {
        let mut r = Reassembler::default();
        r.push(Duration::ZERO, key(9), syn(100), b"");
        let half = INVITE.get(..200).expect("half");
        r.push(Duration::ZERO, key(9), data(101), half);
        // A retransmitted SYN changes nothing; a new ISN restarts.
        r.push(Duration::ZERO, key(9), syn(100), b"");
        assert_eq!(r.flow_buffered(&key(9)), Some(200));
        r.push(Duration::ZERO, key(9), syn(7000), b"");
        assert_eq!(r.flow_buffered(&key(9)), Some(0));
        assert_eq!(r.push(Duration::ZERO, key(9), data(7001), ACK), vec![ACK]);
    }

    #[test]
    fn a_flood_of_flows_stays_within_the_caps() {
        let limits = Limits {
            max_flows: 100,
            max_total_buffer: 20_000,
            ..Limits::default()
        };
        let mut r = Reassembler::new(limits);
        let partial = INVITE.get(..300).expect("partial");
        for port in 0..5000u16 {
            r.push(
                Duration::from_millis(u64::from(port)),
                key(port),
                data(0),
                partial,
            );
            r.check_invariants();
        }
        assert!(r.flow_count() <= 66, "20 000 bytes hold 66 partial INVITEs");
        let stats = r.stats();
        assert_eq!(stats.flows_opened, 5000);
        assert_eq!(stats.evictions as usize, 5000 - r.flow_count());
        // The newest flows survive and still complete.
        let rest = INVITE.get(300..).expect("rest");
        assert_eq!(
            r.push(Duration::from_secs(5), key(4999), data(300), rest),
            vec![INVITE]
        );
    }

    fn segment_strategy() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(any::<usize>(), 0..12)
    }

    proptest! {
        #[test]
        fn any_segmentation_yields_the_same_messages(cuts in segment_strategy()) {
            let (bytes, expected) = stream();
            let mut r = Reassembler::default();
            let out = run(&mut r, &bytes, &cuts_to_segments(bytes.len(), &cuts));
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn duplicates_never_duplicate_messages(
            cuts in segment_strategy(),
            replays in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 0..10),
        ) {
            let (bytes, expected) = stream();
            let mut segments = Vec::new();
            for (i, seg) in cuts_to_segments(bytes.len(), &cuts).into_iter().enumerate() {
                segments.push(seg);
                // Retransmit some range of what was already sent.
                if let Some(&(_, start, len)) = replays.iter().find(|(at, _, _)| at % 12 == i) {
                    let sent = seg.0 + seg.1;
                    let start = start % sent;
                    let len = 1 + len % (sent - start);
                    segments.push((start, len));
                }
            }
            let mut r = Reassembler::default();
            prop_assert_eq!(run(&mut r, &bytes, &segments), expected);
        }

        #[test]
        fn reordering_within_the_queue_yields_the_same_messages(cuts in segment_strategy(), swaps in proptest::collection::vec(any::<bool>(), 12)) {
            let (bytes, expected) = stream();
            let mut segments = cuts_to_segments(bytes.len(), &cuts);
            let mut i = 0;
            while i + 1 < segments.len() {
                if swaps.get(i).copied().unwrap_or(false) {
                    segments.swap(i, i + 1);
                    i += 1;
                }
                i += 1;
            }
            let mut r = Reassembler::default();
            prop_assert_eq!(run(&mut r, &bytes, &segments), expected);
        }

        #[test]
        fn arbitrary_segments_never_panic(
            pushes in proptest::collection::vec(
                (0u16..6, any::<u32>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300), 0u64..400),
                0..60,
            ),
        ) {
            let frame = FrameLimits { max_header: 256, max_body: 512 };
            let limits = Limits {
                max_flow_buffer: 700,
                max_total_buffer: 2000,
                max_flows: 4,
                max_out_of_order: 3,
                idle_timeout: Duration::from_secs(100),
                frame,
            };
            let mut r = Reassembler::new(limits);
            for (port, seq, flags, payload, at) in pushes {
                let segment = TcpSegment { seq, syn: flags & 1 != 0, fin: flags & 2 != 0, rst: flags & 4 != 0 };
                for m in r.push(Duration::from_secs(at), key(port), segment, &payload) {
                    prop_assert!(!m.is_empty() && m.len() <= frame.max_message());
                }
                r.check_invariants();
            }
        }
    }
}
