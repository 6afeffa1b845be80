//! One captured frame to the events it means: decode, UDP datagram or
//! reassembled TCP messages, SIP fields, signals. The same path for a live
//! capture and a capture file; the caller gives the time and direction.

use std::net::SocketAddr;
use std::time::Duration;

use crate::event::SecurityEvent;
use crate::sensor::packet::{self, LinkType, Packet, Transport};
use crate::sensor::reassembly::{Limits, Reassembler};
use crate::sensor::signals::{Direction, Seen, SignalConfig, SignalStats, Signals};
use crate::sensor::sip;

/// Counters of what came in and what it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub frames: u64,
    /// Frames that were no UDP/TCP packet (malformed, fragments, other
    /// protocols).
    pub undecoded: u64,
    pub messages: u64,
    /// Payloads that were no SIP (or broken beyond reading).
    pub not_sip: u64,
    pub keepalives: u64,
    /// TLS connection attempts counted.
    pub tls_connects: u64,
}

pub struct Pipeline {
    reassembly: Reassembler,
    signals: Signals,
    /// TCP ports carrying TLS: only connection attempts count there.
    tls_ports: Vec<u16>,
    stats: PipelineStats,
}

impl Pipeline {
    pub fn new(config: SignalConfig, tls_ports: Vec<u16>) -> Self {
        Pipeline {
            reassembly: Reassembler::new(Limits::default()),
            signals: Signals::new(config),
            tls_ports,
            stats: PipelineStats::default(),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    pub fn signal_stats(&self) -> SignalStats {
        self.signals.stats()
    }

    /// The longest a failure can take to mature: after a capture ends,
    /// [`Pipeline::tick`] at its last time plus this reports them all.
    pub fn settle_time(&self) -> Duration {
        self.signals
            .config()
            .auth_window
            .saturating_add(Duration::from_millis(1))
    }

    /// One frame seen at `at` (since the epoch).
    pub fn frame(
        &mut self,
        at: Duration,
        link: LinkType,
        data: &[u8],
        direction: Direction,
        out: &mut Vec<SecurityEvent>,
    ) {
        self.stats.frames = self.stats.frames.saturating_add(1);
        let Ok(p) = packet::decode(link, data) else {
            self.stats.undecoded = self.stats.undecoded.saturating_add(1);
            self.signals.tick(at, out);
            return;
        };
        let seen = Seen {
            at,
            src: SocketAddr::new(p.src, p.src_port),
            dst: SocketAddr::new(p.dst, p.dst_port),
            transport: match p.transport {
                Transport::Udp => "UDP",
                Transport::Tcp(_) => "TCP",
            },
            direction,
        };
        match p.transport {
            Transport::Udp => self.payload(&seen, p.payload, out),
            Transport::Tcp(segment) => {
                if self.tls_ports.contains(&p.dst_port) || self.tls_ports.contains(&p.src_port) {
                    if segment.syn && self.tls_ports.contains(&p.dst_port) {
                        self.stats.tls_connects = self.stats.tls_connects.saturating_add(1);
                        let tls = Seen {
                            transport: "TLS",
                            ..seen
                        };
                        self.signals.connection(&tls, out);
                    } else {
                        self.signals.tick(at, out);
                    }
                    return;
                }
                self.stream(&seen, &p, out);
            }
        }
    }

    /// Failures whose window has passed by `at`.
    pub fn tick(&mut self, at: Duration, out: &mut Vec<SecurityEvent>) {
        self.signals.tick(at, out);
    }

    fn stream(&mut self, seen: &Seen, p: &Packet<'_>, out: &mut Vec<SecurityEvent>) {
        let messages = self.reassembly.push_packet(seen.at, p);
        if messages.is_empty() {
            self.signals.tick(seen.at, out);
        }
        for m in messages {
            self.payload(seen, &m, out);
        }
    }

    fn payload(&mut self, seen: &Seen, bytes: &[u8], out: &mut Vec<SecurityEvent>) {
        match sip::parse(bytes) {
            Ok(msg) => {
                self.stats.messages = self.stats.messages.saturating_add(1);
                self.signals.message(seen, &msg, out);
            }
            Err(e) if e.is_keepalive() => {
                self.stats.keepalives = self.stats.keepalives.saturating_add(1);
                self.signals.tick(seen.at, out);
            }
            Err(_) => {
                self.stats.not_sip = self.stats.not_sip.saturating_add(1);
                self.signals.tick(seen.at, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::sensor::pcap_file::CaptureReader;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    /// Every event of a fixture capture, the pending failures settled.
    pub(crate) fn events_of(name: &str) -> Vec<SecurityEvent> {
        let path = format!(
            "{}/tests/fixtures/sip/{name}.pcap",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut p = Pipeline::new(SignalConfig::default(), vec![5061]);
        let mut out = Vec::new();
        let mut last = Duration::ZERO;
        for r in CaptureReader::open(&path).unwrap() {
            let r = r.unwrap();
            last = r.timestamp;
            p.frame(r.timestamp, r.link, &r.data, Direction::Unknown, &mut out);
        }
        p.tick(last + p.settle_time(), &mut out);
        assert_eq!(p.stats().undecoded, 0, "{name}");
        out
    }

    fn kinds(events: &[SecurityEvent]) -> BTreeMap<(IpAddr, String), usize> {
        let mut m = BTreeMap::new();
        for e in events {
            *m.entry((e.source, e.kind.name().to_string())).or_default() += 1;
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_office_phone_gives_no_failure_and_no_scanner() {
        let ev = events_of("s5-office");
        assert!(
            ev.iter().all(|e| !matches!(
                e.kind,
                EventKind::SipFailure | EventKind::Scanner | EventKind::RequestFlood
            )),
            "{:?}",
            kinds(&ev)
        );
        // 1001 is no test account: nothing for the test-account rule either.
        assert!(ev.is_empty(), "{:?}", kinds(&ev));
        // svwar's REGISTER to 1000 (a test account) is reported as such.
        let ev = events_of("s2-svwar");
        assert!(
            ev.iter()
                .any(|e| e.kind == EventKind::SipRequest && e.account == "1000")
        );
    }

    #[test]
    fn svmap_is_a_scanner_on_v4_and_v6() {
        let ev = events_of("s1-svmap");
        let k = kinds(&ev);
        assert_eq!(k.get(&(ip("203.0.113.11"), "Scanner".into())), Some(&1));
        assert_eq!(k.get(&(ip("2001:db8:113::11"), "Scanner".into())), Some(&1));
        let s = ev.iter().find(|e| e.kind == EventKind::Scanner).unwrap();
        let d = s.sip.as_ref().unwrap();
        assert_eq!(d.user_agent.as_deref(), Some("friendly-scanner"));
        assert_eq!(d.method.as_deref(), Some("OPTIONS"));
        assert_eq!(s.account, "100");
    }

    #[test]
    fn svcrack_guesses_are_failures_each() {
        let ev = events_of("s3-svcrack");
        let k = kinds(&ev);
        // 22 REGISTERs: the first one's challenge is answered by the
        // guesses, each guess is a failure, as the AMI's 21
        // ChallengeResponseFailed.
        assert_eq!(
            k.get(&(ip("203.0.113.12"), "SipFailure".into())),
            Some(&21),
            "{k:?}"
        );
        let f = ev.iter().find(|e| e.kind == EventKind::SipFailure).unwrap();
        assert_eq!(f.account, "1002");
        assert_eq!(f.sip.as_ref().unwrap().method.as_deref(), Some("REGISTER"));
    }

    #[test]
    fn wrong_passwords_over_udp_and_tcp_are_failures() {
        let k = kinds(&events_of("s4-wrongpass-unknownuser"));
        // Five wrong passwords: five failures, as the AMI's five.
        assert_eq!(
            k.get(&(ip("203.0.113.13"), "SipFailure".into())),
            Some(&5),
            "{k:?}"
        );
        assert!(
            k.get(&(ip("203.0.113.14"), "SipFailure".into()))
                .is_some_and(|n| *n >= 5),
            "{k:?}"
        );
        let k = kinds(&events_of("s8-tcp"));
        assert!(
            k.get(&(ip("203.0.113.13"), "SipFailure".into()))
                .is_some_and(|n| *n >= 5),
            "{k:?}"
        );
    }

    #[test]
    fn the_mixed_run_blames_every_attacker_and_never_the_office() {
        let ev = events_of("s6-mixed");
        let k = kinds(&ev);
        for attacker in [
            "203.0.113.11",
            "203.0.113.12",
            "203.0.113.13",
            "203.0.113.14",
        ] {
            assert!(
                k.keys()
                    .any(|(s, kind)| *s == ip(attacker)
                        && (kind == "SipFailure" || kind == "Scanner")),
                "{attacker}: {k:?}"
            );
        }
        assert!(
            !k.keys()
                .any(|(s, kind)| *s == ip("203.0.113.50") && kind != "SipRequest"),
            "office: {k:?}"
        );
        // chan_sip's 403s to the wrong passwords on 5070 count at once.
        assert!(
            ev.iter()
                .any(|e| e.kind == EventKind::SipFailure && e.port != 0)
        );
    }
}
