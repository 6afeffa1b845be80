//! ipset element changes over netlink, without the `ipset` tool: one batch
//! of adds and deletes is one `send` of several netlink messages to the
//! kernel's ipset subsystem (`NFNL_SUBSYS_IPSET`), then the kernel's
//! acknowledgements are read back, one per message. No process is spawned
//! per batch (a single element takes a few microseconds instead of the
//! 1.3-2 ms of spawning `ipset`).
//!
//! The wire format, from the kernel's `include/uapi/linux/netfilter/
//! ipset/ip_set.h`, `net/netfilter/ipset/ip_set_core.c` (`ip_set_ad`,
//! `call_ad`, `ip_set_protocol`) and libipset's `lib/mnl.c`/`session.c`,
//! checked against what `ipset add` 7.17 sends (strace):
//!
//! ```text
//! nlmsghdr   type (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_ADD or _DEL,
//!            flags NLM_F_REQUEST | NLM_F_ACK (no NLM_F_EXCL: `-exist`)
//! nfgenmsg   family AF_INET or AF_INET6, NFNETLINK_V0, res_id 0
//! IPSET_ATTR_PROTOCOL  u8
//! IPSET_ATTR_SETNAME   NUL-terminated, at most 31 bytes + NUL
//! IPSET_ATTR_DATA      | NLA_F_NESTED
//!     IPSET_ATTR_IP    | NLA_F_NESTED
//!         IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER   4 bytes
//!      or IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER  16 bytes
//!     IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER  u32, big endian (adds)
//! ```
//!
//! Without `NLM_F_EXCL` the kernel runs the command with
//! `IPSET_FLAG_EXIST`: adding a present element overwrites its timeout,
//! and deleting an absent one succeeds (`call_ad` turns
//! `IPSET_ERR_EXIST` into success), as `ipset -exist restore` does.
//!
//! The protocol version is asked once when the socket opens
//! (`IPSET_CMD_PROTOCOL`: the kernel answers its highest version and,
//! since protocol 7, its lowest). Versions 6 and 7 share this format;
//! kernels before 7 accept exactly their own version on adds and deletes,
//! newer ones anything from their minimum, so we send the lower of 7 and
//! the kernel's highest.
//!
//! The kernel handles the messages of one `send` synchronously, each on its
//! own, so one bad element does not stop the others. Every message is
//! acknowledged with an `NLMSG_ERROR` carrying its sequence number, which
//! maps each error back to its element. The acknowledgements queue up on
//! our socket while the kernel works, so a `send` carries no more messages
//! than the receive buffer can hold acknowledgements for; if some are lost
//! anyway (`ENOBUFS`), everything from the first unacknowledged message on
//! is sent again with smaller sends (adds and deletes are idempotent under
//! `-exist`, and redoing a suffix in order ends in the same state).

use std::ffi::c_int;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use super::netlink::{
    self, Attrs, Messages, NLA_F_NET_BYTEORDER, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR,
    NetlinkError, Socket, begin_nest, end_msg, end_nest, put_attr,
};

mod errors;
mod message;

pub use errors::{meaning, protocol_rejected};
use message::{begin_msg, check_name, encode};

// include/uapi/linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_IPSET: u16 = 6;

// include/uapi/linux/netfilter/ipset/ip_set.h
/// The protocol version we speak (the kernel's `IPSET_PROTOCOL` since 5.x).
const IPSET_PROTOCOL: u8 = 7;
/// The oldest version with the same add/del format (`IPSET_PROTOCOL_MIN`).
const IPSET_PROTOCOL_MIN: u8 = 6;
const IPSET_MAXNAMELEN: usize = 32;
const IPSET_CMD_PROTOCOL: u16 = 1;
const IPSET_CMD_ADD: u16 = 9;
const IPSET_CMD_DEL: u16 = 10;
// Attributes at command level.
const IPSET_ATTR_PROTOCOL: u16 = 1;
const IPSET_ATTR_SETNAME: u16 = 2;
const IPSET_ATTR_DATA: u16 = 7;
const IPSET_ATTR_PROTOCOL_MIN: u16 = 10;
// Attributes inside IPSET_ATTR_DATA.
const IPSET_ATTR_IP: u16 = 1;
const IPSET_ATTR_TIMEOUT: u16 = 6;
// Attributes inside IPSET_ATTR_IP.
const IPSET_ATTR_IPADDR_IPV4: u16 = 1;
const IPSET_ATTR_IPADDR_IPV6: u16 = 2;
// Error codes (`enum ipset_errno`, and ip_set_hash.h for the hash types).
const IPSET_ERR_PROTOCOL: i32 = 4097;
const IPSET_ERR_EXIST: i32 = 4103;

/// The largest message we build: header, nfgenmsg, protocol, a 31-byte
/// set name, and an IPv6 address with a timeout.
const MAX_MSG: usize = 16 + 4 + 8 + 36 + 4 + 4 + 20 + 8;
/// Receive buffer asked for (the kernel doubles it): room for the
/// acknowledgements of a large send.
const RCVBUF: c_int = 4 << 20;
/// Send buffer asked for; the kernel refuses a send larger than it.
const SNDBUF: c_int = 1 << 20;
/// Upper bound of one send (bytes).
const MAX_SEND: usize = 256 << 10;
/// What one queued acknowledgement costs the receive buffer (its skb's
/// truesize: about 830 bytes measured on 6.18; with a margin).
const ACK_COST: usize = 1536;
/// A reply the kernel owes us is already queued when `send` returns (it
/// runs our messages synchronously); this only guards against a hang.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds of resending after lost acknowledgements before giving up.
const MAX_RESENDS: usize = 16;

/// One element change: add with a kernel timeout (seconds), or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change<'a> {
    pub set: &'a str,
    pub ip: IpAddr,
    /// `Some(seconds)`: add (or renew) with this timeout; `None`: delete.
    pub timeout: Option<u32>,
}

impl fmt::Display for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timeout {
            Some(t) => write!(f, "add {} {} timeout {t}", self.set, self.ip),
            None => write!(f, "del {} {}", self.set, self.ip),
        }
    }
}

/// A change the kernel (or our own check) refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Index of the change in the batch.
    pub index: usize,
    /// The kernel's error (positive errno or ipset error code); 0 when the
    /// change was not sent (invalid set name).
    pub code: i32,
    /// The change, what the code means, and the kernel's own message if it
    /// sent one.
    pub message: String,
}

/// A netlink socket to the ipset subsystem of the calling thread's network
/// namespace (fixed when it is opened).
pub struct IpsetNetlink {
    sock: Socket,
    seq: u32,
    protocol: u8,
    /// Messages per send (bounded by the acknowledgements the receive
    /// buffer holds).
    max_msgs: usize,
    /// Bytes per send (bounded by the send buffer).
    max_bytes: usize,
    out: Vec<u8>,
}

impl fmt::Debug for IpsetNetlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpsetNetlink")
            .field("fd", &self.sock.raw())
            .field("protocol", &self.protocol)
            .field("max_msgs", &self.max_msgs)
            .finish()
    }
}

impl IpsetNetlink {
    /// Opens and binds the socket, sizes its buffers and agrees on the
    /// protocol version with the kernel.
    pub fn open() -> Result<IpsetNetlink, NetlinkError> {
        Self::open_with(RCVBUF)
    }

    fn open_with(rcvbuf: c_int) -> Result<IpsetNetlink, NetlinkError> {
        let (sock, rcv, snd) = Socket::open(rcvbuf, SNDBUF, RECV_TIMEOUT)?;
        let mut nl = IpsetNetlink {
            sock,
            seq: 1,
            protocol: IPSET_PROTOCOL,
            max_msgs: (rcv / ACK_COST).max(1),
            // The kernel refuses a send above the send buffer less 32.
            max_bytes: snd.saturating_sub(64).clamp(MAX_MSG, MAX_SEND),
            out: Vec::new(),
        };
        nl.protocol = nl.negotiate()?;
        Ok(nl)
    }

    /// The protocol version sent with every message.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Asks the kernel for its protocol range (`IPSET_CMD_PROTOCOL`).
    fn negotiate(&mut self) -> Result<u8, NetlinkError> {
        let seq = self.next_seq();
        let mut m = Vec::with_capacity(32);
        let at = begin_msg(&mut m, IPSET_CMD_PROTOCOL, libc::AF_INET as u8, seq);
        put_attr(&mut m, IPSET_ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
        end_msg(&mut m, at);
        self.sock.send(&m)?;
        let (mut max, mut min, mut acked) = (None, None, false);
        while !acked {
            let n = self.sock.recv(0)?;
            for msg in Messages::new(self.sock.received(n)) {
                if msg.seq != seq {
                    continue;
                }
                match msg.kind {
                    NLMSG_ERROR => {
                        let (code, text) = msg.error();
                        if code != 0 {
                            return Err(NetlinkError::Protocol(format!(
                                "the kernel refused the ipset protocol query: {}",
                                meaning(code, false, text.as_deref())
                            )));
                        }
                        acked = true;
                    }
                    t if t == (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_PROTOCOL => {
                        for (ty, val) in Attrs::new(msg.payload.get(4..).unwrap_or_default()) {
                            match (ty, val) {
                                (IPSET_ATTR_PROTOCOL, [v]) => max = Some(*v),
                                (IPSET_ATTR_PROTOCOL_MIN, [v]) => min = Some(*v),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let max = max.ok_or_else(|| {
            NetlinkError::Protocol("the kernel did not tell its ipset protocol version".into())
        })?;
        let min = min.unwrap_or(max);
        let ours = max.min(IPSET_PROTOCOL);
        if ours < IPSET_PROTOCOL_MIN || ours < min {
            return Err(NetlinkError::Protocol(format!(
                "kernel ipset protocol {min}..={max}, we speak {IPSET_PROTOCOL_MIN}..={IPSET_PROTOCOL}"
            )));
        }
        Ok(ours)
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// Applies `changes` in order. Returns the changes that were refused,
    /// in order, each with what the kernel said; an `Err` means the kernel
    /// could not be talked to (some changes may have been applied: all are
    /// idempotent, so the caller may apply the whole batch again).
    pub fn apply(&mut self, changes: &[Change<'_>]) -> Result<Vec<Refused>, NetlinkError> {
        let mut refused: Vec<Refused> = Vec::new();
        let mut next = 0;
        let mut resends = 0;
        // Index of each message of the current send in `changes`.
        let mut sent: Vec<usize> = Vec::new();
        while next < changes.len() {
            self.out.clear();
            sent.clear();
            let base = self.seq;
            let mut i = next;
            while i < changes.len()
                && sent.len() < self.max_msgs
                && self.out.len() + MAX_MSG <= self.max_bytes
            {
                let c = &changes[i];
                match check_name(c.set) {
                    Ok(()) => {
                        let seq = self.next_seq();
                        encode(&mut self.out, self.protocol, seq, c);
                        sent.push(i);
                    }
                    Err(why) => refused.push(Refused {
                        index: i,
                        code: 0,
                        message: format!("{c}: not sent: {why}"),
                    }),
                }
                i += 1;
            }
            if !sent.is_empty() {
                let out = std::mem::take(&mut self.out);
                let r = self.sock.send(&out);
                self.out = out;
                r?;
            }
            let unacked = self.read_acks(base, &sent, changes, &mut refused)?;
            match unacked {
                None => next = i,
                Some(first) => {
                    // Acknowledgements were dropped: the receive queue was
                    // full. Redo from the first unacknowledged change on,
                    // with smaller sends.
                    resends += 1;
                    if resends > MAX_RESENDS {
                        return Err(NetlinkError::Protocol(
                            "acknowledgements keep getting lost (receive buffer overrun)".into(),
                        ));
                    }
                    let from = sent[first];
                    refused.retain(|r| r.index < from);
                    // The queue held `first` of them: stay below that.
                    self.max_msgs = if first > 1 {
                        first * 3 / 4
                    } else {
                        (sent.len() / 2).max(1)
                    };
                    tracing::debug!(
                        "IPSET => acknowledgements lost after {first} messages; \
                         resending from there, {} per send",
                        self.max_msgs
                    );
                    next = from;
                }
            }
        }
        refused.sort_by_key(|r| r.index);
        Ok(refused)
    }

    /// Reads the acknowledgements of the messages `base..base+sent.len()`.
    /// Returns the position in `sent` of the first one that was lost, if
    /// the receive queue overflowed.
    fn read_acks(
        &mut self,
        base: u32,
        sent: &[usize],
        changes: &[Change<'_>],
        refused: &mut Vec<Refused>,
    ) -> Result<Option<usize>, NetlinkError> {
        let mut acked = vec![false; sent.len()];
        let mut remaining = sent.len();
        let mut overrun = false;
        while remaining > 0 {
            let flags = if overrun { libc::MSG_DONTWAIT } else { 0 };
            let n = match self.sock.recv(flags) {
                Ok(n) => n,
                Err(NetlinkError::Io(_, e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    overrun = true;
                    continue;
                }
                Err(NetlinkError::Io(_, e))
                    if overrun && e.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            };
            for msg in Messages::new(self.sock.received(n)) {
                if msg.kind != NLMSG_ERROR {
                    continue;
                }
                let k = msg.seq.wrapping_sub(base) as usize;
                if k >= sent.len() || acked[k] {
                    continue; // not ours: a late answer to an earlier send
                }
                acked[k] = true;
                remaining -= 1;
                let (code, text) = msg.error();
                let c = &changes[sent[k]];
                // `-exist`: deleting what is not there is done.
                if code == 0 || (code == IPSET_ERR_EXIST && c.timeout.is_none()) {
                    continue;
                }
                refused.push(Refused {
                    index: sent[k],
                    code,
                    message: format!(
                        "{c}: {}",
                        meaning(code, c.timeout.is_some(), text.as_deref())
                    ),
                });
            }
        }
        Ok((remaining > 0).then(|| acked.iter().position(|a| !a).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::netlink::{NLM_F_ACK_TLVS, NLM_F_CAPPED};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::process::Command;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn add_message_matches_what_ipset_sends() {
        // `ipset add t4 192.0.2.1 timeout 30 -exist` as ipset 7.17 sends it
        // (strace), less its IPSET_ATTR_LINENO 0 inside the data.
        let mut buf = Vec::new();
        let c = Change {
            set: "t4",
            ip: ip("192.0.2.1"),
            timeout: Some(30),
        };
        encode(&mut buf, 7, 0x01020304, &c);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &60u32.to_ne_bytes()[..],
            &0x0609u16.to_ne_bytes(), &0x0005u16.to_ne_bytes(), &0x01020304u32.to_ne_bytes(),
            &0u32.to_ne_bytes(),
            &[2, 0, 0, 0], // AF_INET, NFNETLINK_V0, res_id 0
            &[5, 0, 1, 0, 7, 0, 0, 0], // protocol 7
            &[7, 0, 2, 0, b't', b'4', 0, 0], // set name
            &[24, 0, 7, 0x80], // data, nested
            &[0x0c, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x40, 0xc0, 0x00, 0x02, 0x01],
            &[0x08, 0x00, 0x06, 0x40, 0x00, 0x00, 0x00, 0x1e],
        ]
        .concat();
        assert_eq!(buf, want);
    }

    #[test]
    fn ipv6_delete_message_layout() {
        let mut buf = Vec::new();
        let c = Change {
            set: "sipban6",
            ip: ip("2001:db8::1"),
            timeout: None,
        };
        encode(&mut buf, 6, 9, &c);
        assert_eq!(buf.len() % 4, 0);
        let msgs: Vec<_> = Messages::new(&buf).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind, (6 << 8) | 10);
        assert_eq!(msgs[0].flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(msgs[0].payload[0], libc::AF_INET6 as u8);
        let attrs: Vec<_> = Attrs::new(&msgs[0].payload[4..]).collect();
        assert_eq!(attrs[0], (IPSET_ATTR_PROTOCOL, &[6u8][..]));
        assert_eq!(attrs[1], (IPSET_ATTR_SETNAME, &b"sipban6\0"[..]));
        assert_eq!(attrs[2].0, IPSET_ATTR_DATA);
        let data: Vec<_> = Attrs::new(attrs[2].1).collect();
        assert_eq!(data.len(), 1, "no timeout on a delete");
        let inner: Vec<_> = Attrs::new(data[0].1).collect();
        let want = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(inner, vec![(IPSET_ATTR_IPADDR_IPV6, &want[..])]);
        assert!(buf.len() <= MAX_MSG);
    }

    #[test]
    fn garbage_from_the_kernel_does_not_panic() {
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            for m in Messages::new(&junk) {
                let _ = m.error();
            }
            let _ = Attrs::new(&junk).count();
        }
        let mut bad = vec![0u8; 20];
        bad[..4].copy_from_slice(&20u32.to_ne_bytes());
        bad[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        bad[6..8].copy_from_slice(&(NLM_F_ACK_TLVS | NLM_F_CAPPED).to_ne_bytes());
        bad[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        let m = Messages::new(&bad).next().unwrap();
        assert_eq!(m.error(), (i32::MAX, None));
        assert!(meaning(i32::MAX, true, None).contains("errno"));
    }

    // --- Against the kernel, in a private network namespace -------------

    use crate::firewall::netlink::test_netns::in_netns;

    fn ipset(args: &[&str]) -> String {
        let out = Command::new("ipset")
            .args(args)
            .output()
            .expect("run ipset");
        assert!(
            out.status.success(),
            "ipset {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn create(set: &str, family: &str, maxelem: &str) {
        ipset(&[
            "create", set, "hash:ip", "family", family, "timeout", "0", "maxelem", maxelem,
        ]);
    }

    /// `ipset save SET` as (address, timeout) pairs.
    fn saved(set: &str) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<(IpAddr, u64)> = ipset(&["save", set])
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"add") && w.get(1) == Some(&set)).then(|| {
                    let t = match w.get(3..5) {
                        Some(["timeout", t]) => t.parse().unwrap(),
                        _ => 0,
                    };
                    (w[2].parse().unwrap(), t)
                })
            })
            .collect();
        v.sort();
        v
    }

    fn add<'a>(set: &'a str, a: &str, t: u32) -> Change<'a> {
        Change {
            set,
            ip: ip(a),
            timeout: Some(t),
        }
    }

    fn del<'a>(set: &'a str, a: &str) -> Change<'a> {
        Change {
            set,
            ip: ip(a),
            timeout: None,
        }
    }

    fn assert_close(got: u64, want: u64) {
        assert!(
            got <= want && got + 1 >= want,
            "timeout {got}, expected {want} (within 1 s)"
        );
    }

    #[test]
    fn elements_and_timeouts_land_as_ipset_add_puts_them() {
        in_netns(|| {
            create("nl4", "inet", "1000");
            create("nl6", "inet6", "1000");
            let mut nl = IpsetNetlink::open().expect("open netlink");
            assert!((6..=7).contains(&nl.protocol()));
            let refused = nl
                .apply(&[
                    add("nl4", "192.0.2.1", 600),
                    add("nl6", "2001:db8::1", 600),
                    add("nl4", "192.0.2.3", 2_147_483),
                ])
                .expect("apply");
            assert_eq!(refused, vec![]);
            // The reference: the tool, same timeout.
            ipset(&["add", "nl4", "192.0.2.2", "timeout", "600"]);
            ipset(&["add", "nl6", "2001:db8::2", "timeout", "600"]);
            let v4 = saved("nl4");
            let v6 = saved("nl6");
            assert_eq!(
                v4.iter().map(|e| e.0).collect::<Vec<_>>(),
                vec![ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")]
            );
            assert_eq!(
                v6.iter().map(|e| e.0).collect::<Vec<_>>(),
                vec![ip("2001:db8::1"), ip("2001:db8::2")]
            );
            for (e, tool) in [(v4[0], v4[1]), (v6[0], v6[1])] {
                assert_close(e.1, 600);
                assert!(e.1.abs_diff(tool.1) <= 1, "{e:?} vs the tool's {tool:?}");
            }
            assert_close(v4[2].1, 2_147_483);
        });
    }

    #[test]
    fn re_adding_renews_the_timeout_and_deleting_absent_is_fine() {
        in_netns(|| {
            create("re4", "inet", "1000");
            let mut nl = IpsetNetlink::open().expect("open netlink");
            let ok = |nl: &mut IpsetNetlink, c: &[Change<'_>]| {
                assert_eq!(nl.apply(c).expect("apply"), vec![]);
            };
            ok(&mut nl, &[add("re4", "192.0.2.9", 100)]);
            assert_close(saved("re4")[0].1, 100);
            ok(&mut nl, &[add("re4", "192.0.2.9", 500)]);
            assert_close(saved("re4")[0].1, 500);
            ok(&mut nl, &[add("re4", "192.0.2.9", 50)]);
            assert_close(saved("re4")[0].1, 50);
            // Present and absent deletes, and an absent IPv6 one, together.
            ok(
                &mut nl,
                &[
                    del("re4", "192.0.2.9"),
                    del("re4", "192.0.2.10"),
                    del("re4", "192.0.2.9"),
                ],
            );
            assert_eq!(saved("re4"), vec![]);
        });
    }

    #[test]
    fn refused_elements_are_named_and_do_not_block_the_others() {
        in_netns(|| {
            create("ok4", "inet", "1000");
            create("full4", "inet", "2");
            let mut nl = IpsetNetlink::open().expect("open netlink");
            let batch = [
                add("ok4", "192.0.2.1", 60),
                add("missing4", "192.0.2.2", 60),
                add("full4", "192.0.2.3", 60),
                add("full4", "192.0.2.4", 60),
                add("full4", "192.0.2.5", 60),
                add("ok4", "0.0.0.0", 60),
                add("a-set-name-far-too-long-for-ipset", "192.0.2.6", 60),
                del("missing4", "192.0.2.7"),
                add("ok4", "192.0.2.8", 60),
            ];
            let refused = nl.apply(&batch).expect("apply");
            let idx: Vec<usize> = refused.iter().map(|r| r.index).collect();
            assert_eq!(idx, vec![1, 4, 5, 6, 7], "{refused:#?}");
            let by = |i: usize| refused.iter().find(|r| r.index == i).unwrap();
            assert_eq!(by(1).code, libc::ENOENT);
            assert!(
                by(1)
                    .message
                    .starts_with("add missing4 192.0.2.2 timeout 60: ")
                    && by(1).message.contains("does not exist")
                    && by(1).message.contains("ENOENT"),
                "{}",
                by(1).message
            );
            assert!(
                by(4).message.contains("192.0.2.5")
                    && by(4).message.contains("IPSET_ERR_HASH_FULL"),
                "{}",
                by(4).message
            );
            assert!(by(5).message.contains("0.0.0.0"), "{}", by(5).message);
            assert_eq!(by(6).code, 0);
            assert!(by(6).message.contains("not sent"), "{}", by(6).message);
            assert!(by(7).message.starts_with("del missing4 192.0.2.7"));
            assert!(!protocol_rejected(&refused, batch.len()));
            let got = |s| saved(s).into_iter().map(|e| e.0).collect::<Vec<_>>();
            assert_eq!(got("ok4"), vec![ip("192.0.2.1"), ip("192.0.2.8")]);
            assert_eq!(got("full4"), vec![ip("192.0.2.3"), ip("192.0.2.4")]);
        });
    }

    #[test]
    fn wrong_family_is_refused_per_element() {
        in_netns(|| {
            create("fam4", "inet", "1000");
            let mut nl = IpsetNetlink::open().expect("open netlink");
            let batch = [add("fam4", "2001:db8::1", 60), add("fam4", "192.0.2.1", 60)];
            let refused = nl.apply(&batch).expect("apply");
            assert_eq!(refused.len(), 1, "{refused:#?}");
            assert_eq!(refused[0].index, 0);
            assert!(
                refused[0]
                    .message
                    .starts_with("add fam4 2001:db8::1 timeout 60: "),
                "{}",
                refused[0].message
            );
            assert!(!protocol_rejected(&refused, batch.len()));
            assert!(protocol_rejected(&refused, 1) == (refused[0].code == IPSET_ERR_PROTOCOL));
            assert_eq!(saved("fam4").len(), 1);
        });
    }

    fn many(n: u32) -> Vec<IpAddr> {
        // 198.18.0.0/15 (benchmarking range)
        (0..n)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_0000u32 + i)))
            .collect()
    }

    #[test]
    fn ten_thousand_in_one_call_all_land() {
        in_netns(|| {
            create("big4", "inet", "100000");
            let mut nl = IpsetNetlink::open().expect("open netlink");
            let all = many(10_000);
            let batch: Vec<Change<'_>> = all
                .iter()
                .map(|a| Change {
                    set: "big4",
                    ip: *a,
                    timeout: Some(3600),
                })
                .collect();
            assert_eq!(nl.apply(&batch).expect("apply"), vec![]);
            let got = saved("big4");
            assert_eq!(got.len(), 10_000);
            assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), all);
            assert!(got.iter().all(|e| e.1 + 1 >= 3600 && e.1 <= 3600));
            let dels: Vec<Change<'_>> = all
                .iter()
                .map(|a| Change {
                    set: "big4",
                    ip: *a,
                    timeout: None,
                })
                .collect();
            assert_eq!(nl.apply(&dels).expect("apply"), vec![]);
            assert_eq!(saved("big4"), vec![]);
        });
    }

    #[test]
    fn lost_acknowledgements_are_recovered() {
        in_netns(|| {
            create("ov4", "inet", "100000");
            // A tiny receive buffer and no limit on messages per send: the
            // kernel drops acknowledgements, and apply must notice and redo.
            let mut nl = IpsetNetlink::open_with(4096).expect("open netlink");
            nl.max_msgs = usize::MAX;
            let all = many(3_000);
            let mut batch: Vec<Change<'_>> = all
                .iter()
                .map(|a| Change {
                    set: "ov4",
                    ip: *a,
                    timeout: Some(600),
                })
                .collect();
            // A refused element past the overrun is reported exactly once.
            batch.push(add("nope4", "192.0.2.1", 60));
            batch.push(del("ov4", &all[0].to_string()));
            let refused = nl.apply(&batch).expect("apply");
            assert_eq!(refused.len(), 1, "{refused:#?}");
            assert_eq!((refused[0].index, refused[0].code), (3_000, libc::ENOENT));
            assert!(nl.max_msgs < 3_000);
            let got: Vec<IpAddr> = saved("ov4").into_iter().map(|e| e.0).collect();
            assert_eq!(got, all[1..].to_vec());
        });
    }
}
