//! Set element changes over netlink, without libnftables: the storm path.
//! libnftables parses a text script and resolves every address through
//! `getaddrinfo`, about 3 µs an element here (0.3 s of a 100k storm, as
//! much as the kernel's own work); this writes the kernel's messages
//! directly, the same ones `nft` sends for `add element` / `delete
//! element` (checked with strace against nft 1.0.6), in one transaction.
//! Tables, sets, chains and listings stay with libnftables.
//!
//! The wire format (`include/uapi/linux/netfilter/nf_tables.h`,
//! `net/netfilter/nf_tables_api.c`, `net/netfilter/nfnetlink.c`):
//!
//! ```text
//! NFNL_MSG_BATCH_BEGIN  nfgenmsg AF_UNSPEC, res_id = htons(NFNL_SUBSYS_NFTABLES)
//! NFT_MSG_NEWSETELEM    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, nfgenmsg family
//!   (or DELSETELEM      NLM_F_REQUEST | NLM_F_ACK)
//!   NFTA_SET_ELEM_LIST_TABLE     name, NUL-terminated
//!   NFTA_SET_ELEM_LIST_SET       name, NUL-terminated
//!   NFTA_SET_ELEM_LIST_ELEMENTS  | NLA_F_NESTED
//!     NFTA_LIST_ELEM             | NLA_F_NESTED   (one per element)
//!       NFTA_SET_ELEM_KEY        | NLA_F_NESTED
//!         NFTA_DATA_VALUE        4 or 16 bytes, network order
//!       NFTA_SET_ELEM_TIMEOUT    u64 milliseconds, big endian (adds)
//!   ... more messages: one per set and verb, split below the u16 nest length
//! NFNL_MSG_BATCH_END
//! ```
//!
//! The kernel runs the whole batch inside our `send` and commits it only if
//! every message succeeded; otherwise nothing changes. Each message asks
//! for an acknowledgement, so success is seen, not assumed; a failed
//! commit is reported on the batch's first message. The answers are
//! queued by the time `send` returns and are read without blocking.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::super::netlink::{
    Messages, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, NetlinkError, Socket, begin_msg, begin_nest,
    end_msg, end_nest, put_attr,
};

// include/uapi/linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
// include/uapi/linux/netfilter/nf_tables.h
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;
/// `NFT_NAME_MAXLEN`, the terminating NUL included.
const NAME_MAX: usize = 256;
// include/uapi/linux/netlink.h
const NLM_F_CREATE: u16 = 0x400;

/// Element bytes per message: the elements' nest length is a u16.
const MSG_ELEMENTS: usize = 60_000;
/// Acknowledgements of a batch wait in the receive buffer until read.
const RCVBUF: i32 = 1 << 20;
/// The kernel refuses a batch larger than the send buffer: room for
/// 10k IPv6 elements (about 0.4 MB) and more.
const SNDBUF: i32 = 4 << 20;
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong with one batch: the kernel refused it (nothing was
/// applied), or it could not be talked to.
#[derive(Debug)]
pub enum ElementsError {
    Refused(String),
    Netlink(NetlinkError),
}

impl fmt::Display for ElementsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementsError::Refused(s) => f.write_str(s),
            ElementsError::Netlink(e) => e.fmt(f),
        }
    }
}

impl From<NetlinkError> for ElementsError {
    fn from(e: NetlinkError) -> Self {
        ElementsError::Netlink(e)
    }
}

/// The `nfgenmsg` family of a table named as nft names it (`inet sipban`;
/// a bare name is an `ip` table, as in nft) and its name. `None` for what
/// nft would read differently (quotes, more words): that stays with nft.
pub fn table_family(table: &str) -> Option<(u8, &str)> {
    let mut words = table.split_whitespace();
    let (first, second) = (words.next()?, words.next());
    if words.next().is_some() {
        return None;
    }
    let (family, name) = match second {
        None => ("ip", first),
        Some(name) => (first, name),
    };
    let family = match family {
        "ip" => libc::NFPROTO_IPV4,
        "ip6" => libc::NFPROTO_IPV6,
        "inet" => libc::NFPROTO_INET,
        "arp" => libc::NFPROTO_ARP,
        "bridge" => libc::NFPROTO_BRIDGE,
        "netdev" => libc::NFPROTO_NETDEV,
        _ => return None,
    };
    plain_name(name).then_some((family as u8, name))
}

/// A name nft takes as it is: no quoting, no NUL, within the kernel's limit.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
}

/// One transaction being built: messages of the batch, in order.
pub struct Batch {
    family: u8,
    table: Vec<u8>,
    buf: Vec<u8>,
    /// The open message: where it and its elements' nest start, its verb
    /// and set.
    open: Option<Open>,
    /// Sequence number of the batch's begin and of each message after it.
    first_seq: u32,
    next_seq: u32,
    /// What each message carries, for error reports (by position).
    described: Vec<String>,
}

struct Open {
    msg: usize,
    nest: usize,
    delete: bool,
    set: String,
    count: usize,
}

impl Batch {
    /// A batch for `table` (as [`table_family`] reads it), numbered from
    /// `seq`.
    pub fn new(family: u8, table: &str, seq: u32) -> Batch {
        let mut buf = Vec::with_capacity(4096);
        let at = begin_msg(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, seq);
        set_res_id(&mut buf, at);
        end_msg(&mut buf, at);
        Batch {
            family,
            table: nul_terminated(table),
            buf,
            open: None,
            first_seq: seq,
            next_seq: seq.wrapping_add(1),
            described: Vec::new(),
        }
    }

    /// Adds `ip` to `set` with a kernel timeout of `secs` seconds.
    pub fn add(&mut self, set: &str, ip: IpAddr, secs: u64) {
        self.element(false, set, ip, Some(secs));
    }

    pub fn delete(&mut self, set: &str, ip: IpAddr) {
        self.element(true, set, ip, None);
    }

    fn element(&mut self, delete: bool, set: &str, ip: IpAddr, secs: Option<u64>) {
        let fits = self.open.as_ref().is_some_and(|o| {
            o.delete == delete && o.set == set && self.buf.len() - o.nest < MSG_ELEMENTS
        });
        if !fits {
            self.close();
            self.begin(delete, set);
        }
        let elem = begin_nest(&mut self.buf, NFTA_LIST_ELEM);
        let key = begin_nest(&mut self.buf, NFTA_SET_ELEM_KEY);
        match ip {
            IpAddr::V4(a) => put_attr(&mut self.buf, NFTA_DATA_VALUE, &a.octets()),
            IpAddr::V6(a) => put_attr(&mut self.buf, NFTA_DATA_VALUE, &a.octets()),
        }
        end_nest(&mut self.buf, key);
        if let Some(secs) = secs {
            let ms = secs.saturating_mul(1000);
            put_attr(&mut self.buf, NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
        }
        end_nest(&mut self.buf, elem);
        if let Some(o) = self.open.as_mut() {
            o.count += 1;
        }
    }

    fn begin(&mut self, delete: bool, set: &str) {
        let (kind, flags) = if delete {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        } else {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK)
        };
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let msg = begin_msg(
            &mut self.buf,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            self.family,
            seq,
        );
        put_attr(&mut self.buf, NFTA_SET_ELEM_LIST_TABLE, &self.table);
        put_attr(&mut self.buf, NFTA_SET_ELEM_LIST_SET, &nul_terminated(set));
        let nest = begin_nest(&mut self.buf, NFTA_SET_ELEM_LIST_ELEMENTS);
        self.open = Some(Open {
            msg,
            nest,
            delete,
            set: set.to_string(),
            count: 0,
        });
    }

    fn close(&mut self) {
        if let Some(o) = self.open.take() {
            end_nest(&mut self.buf, o.nest);
            end_msg(&mut self.buf, o.msg);
            let verb = if o.delete { "delete" } else { "add" };
            self.described
                .push(format!("{verb} of {} element(s) in set {}", o.count, o.set));
        }
    }

    /// Number of element messages (the begin and end not counted).
    pub fn messages(&self) -> usize {
        self.described.len() + usize::from(self.open.is_some())
    }

    /// The whole batch, closed with its end message.
    fn finish(&mut self) -> &[u8] {
        self.close();
        let at = begin_msg(
            &mut self.buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            0,
            self.next_seq,
        );
        set_res_id(&mut self.buf, at);
        end_msg(&mut self.buf, at);
        &self.buf
    }
}

/// The batch messages name the subsystem in `res_id` (network order).
fn set_res_id(buf: &mut [u8], msg: usize) {
    if let Some(r) = buf.get_mut(msg + 18..msg + 20) {
        r.copy_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// The answers to one batch, as they are read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answers {
    /// Element messages acknowledged without error.
    pub acked: usize,
    /// Errors: which message (0: the batch itself, i.e. its commit; k: the
    /// k-th element message), the error code and the kernel's text.
    pub errors: Vec<(usize, i32, Option<String>)>,
}

impl Answers {
    /// Takes in one datagram of answers to the batch numbered from `first`
    /// with `messages` element messages; anything else is ignored.
    pub fn read(&mut self, datagram: &[u8], first: u32, messages: usize) {
        for msg in Messages::new(datagram) {
            if msg.kind != NLMSG_ERROR {
                continue;
            }
            let k = msg.seq.wrapping_sub(first) as usize;
            if k > messages {
                continue; // an answer to an earlier batch
            }
            match msg.error() {
                (0, _) if k > 0 => self.acked += 1,
                (0, _) => {}
                (code, text) => self.errors.push((k, code, text)),
            }
        }
    }
}

/// A netlink socket of the applier thread's network namespace.
pub struct Elements {
    sock: Socket,
    seq: u32,
}

impl Elements {
    pub fn open() -> Result<Elements, NetlinkError> {
        let (sock, _, _) = Socket::open(RCVBUF, SNDBUF, RECV_TIMEOUT)?;
        Ok(Elements { sock, seq: 1 })
    }

    /// A new batch for `table` (`family`, name: see [`table_family`]).
    pub fn batch(&mut self, family: u8, table: &str) -> Batch {
        let b = Batch::new(family, table, self.seq);
        // Room for a batch's numbers: they are never reused soon.
        self.seq = self.seq.wrapping_add(1 << 20);
        b
    }

    /// Sends `batch` as one transaction and checks that the kernel took
    /// every message and committed them.
    pub fn apply(&mut self, mut batch: Batch) -> Result<(), ElementsError> {
        let messages = batch.messages();
        if messages == 0 {
            return Ok(());
        }
        if messages >= 1 << 20 {
            return Err(ElementsError::Refused("batch too large".into()));
        }
        let first = batch.first_seq;
        self.sock.send(batch.finish())?;
        let mut answers = Answers::default();
        loop {
            match self.sock.recv(libc::MSG_DONTWAIT) {
                Ok(n) => answers.read(self.sock.received(n), first, messages),
                Err(NetlinkError::Io(_, e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if answers.errors.is_empty() && answers.acked == messages {
            return Ok(());
        }
        Err(ElementsError::Refused(describe(&answers, &batch, messages)))
    }
}

fn describe(a: &Answers, batch: &Batch, messages: usize) -> String {
    let Some((k, code, text)) = a.errors.first() else {
        return format!("{} of {messages} element messages acknowledged", a.acked);
    };
    let what = match k.checked_sub(1).and_then(|i| batch.described.get(i)) {
        Some(d) => d.as_str(),
        None => "commit",
    };
    let os = std::io::Error::from_raw_os_error(*code);
    match text {
        Some(t) => format!("{what}: {os} ({t})"),
        None => format!("{what}: {os}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_add_is_what_nft_sends() {
        // `nft add element inet t s { 198.18.0.1 timeout 100s }` (nft 1.0.6,
        // strace), without its NFTA_SET_ELEM_LIST_SET_ID and with our ack
        // flag; nft's own element puts the timeout before the key.
        let mut b = Batch::new(libc::NFPROTO_INET as u8, "t", 0);
        b.add("s", ip("198.18.0.1"), 100);
        let bytes = b.finish().to_vec();
        let mut want = Vec::new();
        // Batch begin: len 20, type 0x10, NLM_F_REQUEST, seq 0, res_id 10.
        want.extend_from_slice(&20u32.to_ne_bytes());
        want.extend_from_slice(&0x10u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[0, 0, 0, 10]);
        // NEWSETELEM: len 16 + 4 + 8 + 8 + 4 + 28 = 68.
        want.extend_from_slice(&68u32.to_ne_bytes());
        want.extend_from_slice(&(10u16 << 8 | 12).to_ne_bytes());
        want.extend_from_slice(&(0x400u16 | 0x04 | 0x01).to_ne_bytes());
        want.extend_from_slice(&1u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&[6, 0, 1, 0, b't', 0, 0, 0]);
        want.extend_from_slice(&[6, 0, 2, 0, b's', 0, 0, 0]);
        want.extend_from_slice(&[32, 0, 3, 0x80]);
        want.extend_from_slice(&[28, 0, 1, 0x80]);
        want.extend_from_slice(&[12, 0, 1, 0x80, 8, 0, 1, 0, 198, 18, 0, 1]);
        want.extend_from_slice(&[12, 0, 4, 0, 0, 0, 0, 0, 0, 1, 0x86, 0xa0]);
        // Batch end: seq 2.
        want.extend_from_slice(&20u32.to_ne_bytes());
        want.extend_from_slice(&0x11u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&2u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[0, 0, 0, 10]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn messages_follow_verb_and_set_and_stay_below_the_nest_limit() {
        let mut b = Batch::new(1, "sipban", 7);
        b.delete("v4", ip("192.0.2.1"));
        b.delete("v6", ip("2001:db8::1"));
        for i in 0..5000u32 {
            b.add("v4", IpAddr::from((0xc612_0000u32 + i).to_be_bytes()), 60);
        }
        b.add("v6", ip("2001:db8::2"), 60);
        // 5000 IPv4 adds of 28 bytes: three messages under 60,000 bytes.
        assert_eq!(b.messages(), 6);
        let bytes = b.finish().to_vec();
        let mut seqs = Vec::new();
        let mut at = 0;
        while let Some(h) = bytes.get(at..at + 16) {
            let len = u32::from_ne_bytes(h[..4].try_into().unwrap()) as usize;
            assert!(len < 65_536);
            seqs.push(u32::from_ne_bytes(h[8..12].try_into().unwrap()));
            at += len;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(seqs, (7..=14).collect::<Vec<_>>());
        assert_eq!(b.described[0], "delete of 1 element(s) in set v4");
    }

    #[test]
    fn table_names_as_nft_reads_them() {
        assert_eq!(table_family("inet sipban"), Some((1, "sipban")));
        assert_eq!(table_family("filter"), Some((2, "filter")));
        assert_eq!(table_family("ip6 fw"), Some((10, "fw")));
        assert_eq!(table_family("bogus fw"), None);
        assert_eq!(table_family("inet \"my table\""), None);
        assert_eq!(table_family("inet a b"), None);
        assert_eq!(table_family(""), None);
    }

    fn answer(seq: u32, code: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-code).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        m
    }

    #[test]
    fn answers_count_acks_and_place_errors() {
        let mut a = Answers::default();
        let mut d = answer(100, 0); // the begin: ignored when zero
        d.extend(answer(101, 0));
        d.extend(answer(102, libc::ENOENT));
        d.extend(answer(50, 0)); // an older batch's
        d.extend(answer(104, 0)); // beyond this batch's messages
        a.read(&d, 100, 3);
        assert_eq!(a.acked, 1);
        assert_eq!(a.errors, vec![(2, libc::ENOENT, None)]);
        let mut a = Answers::default();
        a.read(&answer(100, libc::ENOMEM), 100, 3);
        assert_eq!(a.errors, vec![(0, libc::ENOMEM, None)]);
    }

    // --- Against the kernel, in a private network namespace -------------

    fn netns() -> String {
        std::fs::read_link("/proc/thread-self/ns/net")
            .expect("read /proc/thread-self/ns/net")
            .to_string_lossy()
            .into_owned()
    }

    /// Runs `f` on a new thread in a network namespace of its own (the
    /// `nft` commands it runs inherit it). Fails if it cannot: never
    /// touches the machine's own tables, and never skips.
    fn in_netns(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(move || {
            let before = netns();
            // SAFETY: unshare(2) affects only the calling thread here.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) failed (these tests need root): {}",
                std::io::Error::last_os_error()
            );
            assert_ne!(before, netns(), "still in the machine's network namespace");
            f();
        })
        .join()
        .expect("test thread");
    }

    fn nft(args: &[&str]) -> String {
        let out = std::process::Command::new("nft")
            .args(args)
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The set's elements with their timeouts (seconds), sorted.
    fn held(set: &str) -> Vec<(IpAddr, u64)> {
        let json = nft(&["-j", "list", "set", "inet", "t", set]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut out: Vec<(IpAddr, u64)> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["set"]["elem"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                let ip = e["elem"]["val"].as_str().unwrap().parse().unwrap();
                (ip, e["elem"]["timeout"].as_u64().unwrap())
            })
            .collect();
        out.sort();
        out
    }

    fn sets() {
        nft(&["add", "table", "inet", "t"]);
        nft(&["add set inet t s4 { type ipv4_addr; flags timeout; }"]);
        nft(&["add set inet t s6 { type ipv6_addr; flags timeout; }"]);
    }

    #[test]
    fn elements_land_as_nft_puts_them_in_one_transaction() {
        in_netns(|| {
            sets();
            let mut nl = Elements::open().expect("netlink");
            let mut b = nl.batch(1, "t");
            for i in 0..3000u32 {
                b.add("s4", IpAddr::from((0xc612_0000u32 + i).to_be_bytes()), 600);
            }
            b.add("s6", ip("2001:db8::1"), 86_402);
            nl.apply(b).expect("apply");
            let v4 = held("s4");
            assert_eq!(v4.len(), 3000);
            assert!(v4.iter().all(|(_, t)| *t == 600), "{:?}", &v4[..3]);
            assert_eq!(held("s6"), vec![(ip("2001:db8::1"), 86_402)]);
            // Delete and re-add in one transaction renews the timeout.
            let mut b = nl.batch(1, "t");
            b.delete("s6", ip("2001:db8::1"));
            b.delete("s4", ip("198.18.0.0"));
            b.add("s6", ip("2001:db8::1"), 30);
            nl.apply(b).expect("refresh");
            assert_eq!(held("s6"), vec![(ip("2001:db8::1"), 30)]);
            assert_eq!(held("s4").len(), 2999);
        });
    }

    #[test]
    fn a_refused_batch_changes_nothing_and_says_what_was_refused() {
        in_netns(|| {
            sets();
            let mut nl = Elements::open().expect("netlink");
            // Deleting an absent element fails the whole transaction.
            let mut b = nl.batch(1, "t");
            b.add("s4", ip("192.0.2.1"), 60);
            b.delete("s6", ip("2001:db8::9"));
            let Err(ElementsError::Refused(why)) = nl.apply(b) else {
                panic!("an absent element's delete was accepted");
            };
            assert!(
                why.starts_with("delete of 1 element(s) in set s6: "),
                "{why}"
            );
            assert!(
                held("s4").is_empty(),
                "the add went in with the refused delete"
            );
            // An IPv6 key in the IPv4 set, a set that does not exist.
            let mut b = nl.batch(1, "t");
            b.add("s4", ip("2001:db8::1"), 60);
            assert!(matches!(nl.apply(b), Err(ElementsError::Refused(_))));
            let mut b = nl.batch(1, "t");
            b.add("nosuch", ip("192.0.2.1"), 60);
            let Err(ElementsError::Refused(why)) = nl.apply(b) else {
                panic!("a missing set was accepted");
            };
            assert!(why.contains("set nosuch"), "{why}");
            // The socket is still good afterwards.
            let mut b = nl.batch(1, "t");
            b.add("s4", ip("192.0.2.1"), 60);
            nl.apply(b).expect("apply after refusals");
            assert_eq!(held("s4"), vec![(ip("192.0.2.1"), 60)]);
        });
    }

    proptest! {
        #[test]
        fn hostile_answers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), first in any::<u32>(), n in 0usize..10) {
            let mut a = Answers::default();
            a.read(&bytes, first, n);
            prop_assert!(a.acked <= bytes.len() / 16);
        }

        #[test]
        fn any_table_text_is_read_or_left_to_nft(s in ".{0,300}") {
            if let Some((_, name)) = table_family(&s) {
                prop_assert!(plain_name(name));
            }
        }
    }
}
