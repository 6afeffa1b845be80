//! Deletes newly banned sources' conntrack entries, so an earlier
//! `ESTABLISHED,RELATED -j ACCEPT` rule cannot keep letting them in
//! (fail2ban #2503). Runs on its own thread: the bans are already in the
//! firewall, this is cleanup and must not delay the next batch.
//!
//! In-process over netlink (ctnetlink), batched: the bans of a storm are
//! gathered for a moment, the conntrack table is dumped once, and every
//! entry whose original source is one of them is deleted, all on one
//! socket. A 10k storm costs one dump and a few sends, where a `conntrack
//! -D -s IP` per ban (about 5 ms of a process each) kept a core busy for
//! most of a minute. If netlink cannot be used, the `conntrack` tool is
//! the fallback, one call per address.
//!
//! The wire format (the kernel's `include/uapi/linux/netfilter/
//! nfnetlink_conntrack.h`, `net/netfilter/nf_conntrack_netlink.c`):
//!
//! ```text
//! dump:    IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, family AF_UNSPEC
//! answers: IPCTNL_MSG_CT_NEW per entry, nfgenmsg family = the entry's,
//!          CTA_TUPLE_ORIG { CTA_TUPLE_IP { CTA_IP_V4_SRC | CTA_IP_V6_SRC ..},
//!          CTA_TUPLE_PROTO {..} }, CTA_ID, CTA_ZONE, ...
//! delete:  IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, the entry's
//!          family, its CTA_TUPLE_ORIG as dumped, CTA_ID and CTA_ZONE
//!          (so a newer entry with the same tuple is not hit)
//! ```

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::FirewallError;
use super::exec::run;
use super::netlink::{
    Attrs, Messages, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkError,
    Socket, begin_msg, begin_nest, end_msg, end_nest, put_attr,
};

// include/uapi/linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
// include/uapi/linux/netfilter/nfnetlink_conntrack.h
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;

/// How long the bans of a storm are gathered before one pass: a dump
/// walks the whole table, so a storm gets a few of them, not one per
/// commit. The bans are in the kernel already (before conntrack at the raw
/// hook): this is cleanup of what came in before.
const GATHER: Duration = Duration::from_millis(250);
/// Deletes per send (their acknowledgements must fit the receive buffer).
const DELETES_PER_SEND: usize = 256;
const RCVBUF: i32 = 4 << 20;
const SNDBUF: i32 = 1 << 20;
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ConntrackFlusher {
    tx: mpsc::Sender<IpAddr>,
}

impl ConntrackFlusher {
    /// `bin` is the `conntrack` tool, used only if netlink is not. The
    /// thread (and its socket) belongs to the caller's network namespace.
    pub fn start(bin: String) -> Option<ConntrackFlusher> {
        let (tx, rx) = mpsc::channel::<IpAddr>();
        thread::Builder::new()
            .name("sipban-conntrack".into())
            .spawn(move || serve(&rx, &bin))
            .ok()?;
        Some(ConntrackFlusher { tx })
    }

    pub fn flush(&self, ip: IpAddr) {
        let _ = self.tx.send(ip);
    }
}

fn serve(rx: &mpsc::Receiver<IpAddr>, bin: &str) {
    let mut nl = match Ctnetlink::open() {
        Ok(nl) => Some(nl),
        Err(e) => {
            tracing::warn!("CONNTRACK => netlink not usable ({e}); using {bin} per address");
            None
        }
    };
    let mut tool_usable = true;
    while let Ok(first) = rx.recv() {
        let mut batch = HashSet::from([first]);
        let until = Instant::now() + GATHER;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(ip) => {
                    batch.insert(ip);
                }
                Err(_) => break,
            }
        }
        if let Some(ct) = nl.as_mut() {
            match ct.delete_from(&batch) {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(
                            "CONNTRACK => {n} entries of {} sources deleted",
                            batch.len()
                        );
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!("CONNTRACK => netlink failed ({e}); using {bin} per address");
                    nl = None;
                }
            }
        }
        if tool_usable {
            tool_usable = batch.iter().all(|ip| with_tool(bin, *ip));
        }
    }
}

/// `conntrack -D -s IP`; false once the tool cannot be run at all.
fn with_tool(bin: &str, ip: IpAddr) -> bool {
    let ip_s = ip.to_string();
    let mut args = vec!["-D", "-s", ip_s.as_str()];
    if ip.is_ipv6() {
        args.extend(["-f", "ipv6"]);
    }
    match run(bin, &args, None) {
        Ok(_) => true,
        // Exit 1 with "0 flow entries": nothing to delete.
        Err(FirewallError::Command { .. }) => true,
        Err(e) => {
            tracing::warn!("CONNTRACK => disabled, existing flows of banned sources are kept: {e}");
            false
        }
    }
}

/// A ctnetlink socket of the calling thread's network namespace.
struct Ctnetlink {
    sock: Socket,
    seq: u32,
}

/// One entry to delete: its family and the attributes that name it.
#[derive(Debug, PartialEq, Eq)]
struct Doomed {
    family: u8,
    tuple: Vec<u8>,
    id: Option<Vec<u8>>,
    zone: Option<Vec<u8>>,
}

impl Ctnetlink {
    fn open() -> Result<Ctnetlink, NetlinkError> {
        let (sock, _, _) = Socket::open(RCVBUF, SNDBUF, RECV_TIMEOUT)?;
        Ok(Ctnetlink { sock, seq: 1 })
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// Dumps the table once and deletes every entry whose original source
    /// is in `sources`; returns how many were deleted.
    fn delete_from(&mut self, sources: &HashSet<IpAddr>) -> Result<usize, NetlinkError> {
        let doomed = self.dump(sources)?;
        let mut deleted = 0;
        for chunk in doomed.chunks(DELETES_PER_SEND) {
            deleted += self.delete(chunk)?;
        }
        Ok(deleted)
    }

    fn dump(&mut self, sources: &HashSet<IpAddr>) -> Result<Vec<Doomed>, NetlinkError> {
        let seq = self.next_seq();
        let mut m = Vec::with_capacity(32);
        let at = begin_msg(
            &mut m,
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            libc::AF_UNSPEC as u8,
            seq,
        );
        end_msg(&mut m, at);
        self.sock.send(&m)?;
        let mut doomed = Vec::new();
        loop {
            let n = self.sock.recv(0)?;
            for msg in Messages::new(self.sock.received(n)) {
                if msg.seq != seq {
                    continue;
                }
                match msg.kind {
                    NLMSG_DONE => return Ok(doomed),
                    NLMSG_ERROR => {
                        let (code, text) = msg.error();
                        return Err(NetlinkError::Protocol(format!(
                            "the kernel refused the conntrack dump: {}",
                            text.unwrap_or_else(
                                || std::io::Error::from_raw_os_error(code).to_string()
                            )
                        )));
                    }
                    k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                        if let Some(d) = entry(msg.payload).filter(|(src, _)| sources.contains(src))
                        {
                            doomed.push(d.1);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Deletes `doomed` (one send); returns how many were there to delete.
    fn delete(&mut self, doomed: &[Doomed]) -> Result<usize, NetlinkError> {
        let base = self.seq;
        let mut out = Vec::with_capacity(doomed.len() * 128);
        for d in doomed {
            let seq = self.next_seq();
            encode_delete(&mut out, seq, d);
        }
        self.sock.send(&out)?;
        let (mut acked, mut deleted) = (0, 0);
        while acked < doomed.len() {
            let n = self.sock.recv(0)?;
            for msg in Messages::new(self.sock.received(n)) {
                let k = msg.seq.wrapping_sub(base) as usize;
                if msg.kind != NLMSG_ERROR || k >= doomed.len() {
                    continue;
                }
                acked += 1;
                match msg.error().0 {
                    0 => deleted += 1,
                    // Gone meanwhile (it timed out, or another delete).
                    libc::ENOENT => {}
                    code => tracing::debug!(
                        "CONNTRACK => delete refused: {}",
                        std::io::Error::from_raw_os_error(code)
                    ),
                }
            }
        }
        Ok(deleted)
    }
}

/// The original source of a dumped entry (after its nfgenmsg) and what
/// deletes it; `None` if it cannot be read.
fn entry(payload: &[u8]) -> Option<(IpAddr, Doomed)> {
    let family = *payload.first()?;
    let attrs = payload.get(4..)?;
    let (mut tuple, mut id, mut zone) = (None, None, None);
    for (ty, val) in Attrs::new(attrs) {
        match ty {
            CTA_TUPLE_ORIG => tuple = Some(val),
            CTA_ID => id = Some(val.to_vec()),
            CTA_ZONE => zone = Some(val.to_vec()),
            _ => {}
        }
    }
    let tuple = tuple?;
    let src = Attrs::new(tuple)
        .filter(|(ty, _)| *ty == CTA_TUPLE_IP)
        .flat_map(|(_, ip)| Attrs::new(ip))
        .find_map(|(ty, val)| match (ty, val.len()) {
            (CTA_IP_V4_SRC, 4) => <[u8; 4]>::try_from(val)
                .ok()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            (CTA_IP_V6_SRC, 16) => <[u8; 16]>::try_from(val)
                .ok()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        })?;
    Some((
        src.to_canonical(),
        Doomed {
            family,
            tuple: tuple.to_vec(),
            id,
            zone,
        },
    ))
}

fn encode_delete(buf: &mut Vec<u8>, seq: u32, d: &Doomed) {
    let at = begin_msg(
        buf,
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        d.family,
        seq,
    );
    let t = begin_nest(buf, CTA_TUPLE_ORIG);
    buf.extend_from_slice(&d.tuple);
    end_nest(buf, t);
    if let Some(id) = &d.id {
        put_attr(buf, CTA_ID, id);
    }
    if let Some(zone) = &d.zone {
        put_attr(buf, CTA_ZONE, zone);
    }
    end_msg(buf, at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A dumped entry as the kernel writes it: nfgenmsg, then the
    /// original tuple (IPv4 192.0.2.7 -> 192.0.2.1, UDP 5060) and an id.
    fn dumped(family: u8, src: &[u8], src_ty: u16) -> Vec<u8> {
        let mut p = vec![family, 0, 0, 0];
        let t = begin_nest(&mut p, CTA_TUPLE_ORIG);
        let ip = begin_nest(&mut p, CTA_TUPLE_IP);
        put_attr(&mut p, src_ty, src);
        put_attr(&mut p, src_ty + 1, src);
        end_nest(&mut p, ip);
        let proto = begin_nest(&mut p, 2);
        put_attr(&mut p, 1, &[17]);
        put_attr(&mut p, 2, &5060u16.to_be_bytes());
        end_nest(&mut p, proto);
        end_nest(&mut p, t);
        put_attr(&mut p, CTA_ID, &7u32.to_be_bytes());
        p
    }

    #[test]
    fn sources_are_read_from_the_original_tuple() {
        let (src, d) = entry(&dumped(libc::AF_INET as u8, &[192, 0, 2, 7], CTA_IP_V4_SRC)).unwrap();
        assert_eq!(src, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(d.family, libc::AF_INET as u8);
        assert_eq!(d.id, Some(7u32.to_be_bytes().to_vec()));
        let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let (src, _) = entry(&dumped(libc::AF_INET6 as u8, &v6.octets(), CTA_IP_V6_SRC)).unwrap();
        assert_eq!(src, IpAddr::V6(v6));
        // The delete carries the tuple as dumped.
        let mut m = Vec::new();
        encode_delete(&mut m, 1, &d);
        assert!(m.len() > 16 + 4 + d.tuple.len());
    }

    proptest! {
        #[test]
        fn hostile_dump_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = entry(&bytes);
        }
    }
}
