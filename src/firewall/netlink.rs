//! What our netlink modules (ipset elements, conntrack entries) share:
//! a `NETLINK_NETFILTER` socket of the calling thread's network namespace,
//! building messages and attributes, and reading the kernel's answers
//! without trusting their lengths. Written here rather than taken from a
//! crate for the reasons the ipset module gives (README, Firewall).

use std::ffi::c_int;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

// include/uapi/linux/netfilter/nfnetlink.h
pub(super) const NFNETLINK_V0: u8 = 0;

// include/uapi/linux/netlink.h
pub(super) const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLM_F_REQUEST: u16 = 0x01;
pub(super) const NLM_F_ACK: u16 = 0x04;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_CAPPED: u16 = 0x100;
pub(super) const NLM_F_ACK_TLVS: u16 = 0x200;
pub(super) const NLA_F_NESTED: u16 = 1 << 15;
pub(super) const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETLINK_CAP_ACK: c_int = 10;
const NETLINK_EXT_ACK: c_int = 11;

/// The socket could not be opened, or talking to the kernel failed.
#[derive(Debug)]
pub enum NetlinkError {
    Io(&'static str, io::Error),
    Protocol(String),
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Io(what, e) => write!(f, "{what}: {e}"),
            NetlinkError::Protocol(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for NetlinkError {}

pub(super) fn last_error(what: &'static str) -> NetlinkError {
    NetlinkError::Io(what, io::Error::last_os_error())
}

/// A bound `NETLINK_NETFILTER` socket and its receive buffer.
pub(super) struct Socket {
    fd: OwnedFd,
    inbuf: Vec<u8>,
}

impl Socket {
    /// Opens and binds the socket with (at least trying for) these buffer
    /// sizes and a receive timeout; returns it with the sizes it got.
    pub fn open(
        rcvbuf: c_int,
        sndbuf: c_int,
        recv_timeout: Duration,
    ) -> Result<(Socket, usize, usize), NetlinkError> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(last_error("socket(AF_NETLINK, NETLINK_NETFILTER)"));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all zero is "kernel picks the
        // port id, no multicast groups".
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_error("bind(AF_NETLINK)"));
        }
        let raw = fd.as_raw_fd();
        // Past the sysctl limits where we may (CAP_NET_ADMIN), else up to
        // them; what we got is read back below.
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
            let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf);
        }
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, sndbuf).is_err() {
            let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, sndbuf);
        }
        // Error acknowledgements without a copy of our message; with the
        // kernel's own error text where it has one. Both optional.
        let _ = setsockopt(raw, libc::SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let _ = setsockopt(raw, libc::SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let tv = libc::timeval {
            tv_sec: recv_timeout.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: tv is a valid timeval of the given size.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_error("setsockopt(SO_RCVTIMEO)"));
        }
        let rcv = getsockopt(raw, libc::SO_RCVBUF).map_err(|e| NetlinkError::Io("SO_RCVBUF", e))?;
        let snd = getsockopt(raw, libc::SO_SNDBUF).map_err(|e| NetlinkError::Io("SO_SNDBUF", e))?;
        let sock = Socket {
            fd,
            inbuf: vec![0; 64 << 10],
        };
        Ok((sock, rcv, snd))
    }

    pub fn raw(&self) -> c_int {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, buf: &[u8]) -> Result<(), NetlinkError> {
        loop {
            // SAFETY: buf is valid for its length; a netlink socket without
            // a destination sends to the kernel.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return if n as usize == buf.len() {
                    Ok(())
                } else {
                    Err(NetlinkError::Protocol(format!(
                        "short netlink send: {n} of {} bytes",
                        buf.len()
                    )))
                };
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(NetlinkError::Io("netlink send", e));
            }
        }
    }

    /// Receives one datagram from the kernel into `inbuf`.
    pub fn recv(&mut self, flags: c_int) -> Result<usize, NetlinkError> {
        loop {
            // SAFETY: sockaddr_nl is plain data.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: inbuf and from are valid for the given sizes.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.inbuf.as_mut_ptr().cast(),
                    self.inbuf.len(),
                    flags,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::Io("netlink receive", e));
            }
            // Only the kernel (port 0) answers us.
            if from.nl_pid != 0 {
                continue;
            }
            return Ok(n as usize);
        }
    }

    /// The first `n` bytes of the last datagram received.
    pub fn received(&self, n: usize) -> &[u8] {
        self.inbuf.get(..n).unwrap_or_default()
    }
}

fn setsockopt(fd: c_int, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: value is a valid int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt(fd: c_int, name: c_int) -> io::Result<usize> {
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writing.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value.max(0) as usize)
    }
}
pub(super) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub(super) fn pad(buf: &mut Vec<u8>) {
    buf.resize(align4(buf.len()), 0);
}

/// Starts a message of type `kind` with its nfgenmsg; returns where it
/// starts (for [`end_msg`]).
pub(super) fn begin_msg(buf: &mut Vec<u8>, kind: u16, flags: u16, family: u8, seq: u32) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by end_msg
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it
    // struct nfgenmsg
    buf.extend_from_slice(&[family, NFNETLINK_V0]);
    buf.extend_from_slice(&0u16.to_be_bytes()); // res_id
    at
}

pub(super) fn end_msg(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

pub(super) fn put_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    pad(buf);
}

pub(super) fn begin_nest(buf: &mut Vec<u8>, ty: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    at
}

pub(super) fn end_nest(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// One received netlink message.
pub(super) struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// After the 16-byte header.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// An `NLMSG_ERROR`'s code (positive; 0 is an acknowledgement) and the
    /// kernel's extended error text, if any.
    pub fn error(&self) -> (i32, Option<String>) {
        let Some(raw) = self.payload.get(..4) else {
            return (libc::EPROTO, None);
        };
        let code = i32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]).saturating_neg();
        let mut text = None;
        if self.flags & NLM_F_ACK_TLVS != 0 {
            // After the error: our message's header, or all of it.
            let echoed = if self.flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                self.payload
                    .get(4..8)
                    .map(|l| u32::from_ne_bytes([l[0], l[1], l[2], l[3]]) as usize)
                    .unwrap_or(NLMSG_HDRLEN)
            };
            let tlvs = self.payload.get(4 + align4(echoed)..).unwrap_or_default();
            for (ty, val) in Attrs::new(tlvs) {
                if ty == NLMSGERR_ATTR_MSG {
                    let s = val.split(|b| *b == 0).next().unwrap_or_default();
                    text = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
        }
        (code, text)
    }
}

/// The messages of one datagram; stops at anything malformed.
pub(super) struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let h = self.buf.get(..NLMSG_HDRLEN)?;
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let msg = Message {
            kind: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            payload: &self.buf[NLMSG_HDRLEN..len],
        };
        self.buf = self.buf.get(align4(len)..).unwrap_or_default();
        // NOOP carries nothing; DONE ends a dump (its reader stops there).
        if msg.kind == NLMSG_NOOP {
            return self.next();
        }
        Some(msg)
    }
}

/// The attributes of one level (type without flags, value).
pub(super) struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let h = self.buf.get(..4)?;
        let len = u16::from_ne_bytes([h[0], h[1]]) as usize;
        let ty = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let val = &self.buf[4..len];
        self.buf = self.buf.get(align4(len)..).unwrap_or_default();
        Some((ty, val))
    }
}

/// For unit tests that talk to the kernel.
#[cfg(test)]
pub(crate) mod test_netns {
    fn netns() -> String {
        std::fs::read_link("/proc/thread-self/ns/net")
            .expect("read /proc/thread-self/ns/net")
            .to_string_lossy()
            .into_owned()
    }

    /// Runs `f` on a new thread in a new network namespace of its own (the
    /// tools it runs inherit it). Fails if it cannot: never touches the
    /// machine's own tables or sets, and never skips.
    pub(crate) fn in_netns(f: impl FnOnce() + Send + 'static) {
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
            let after = netns();
            assert_ne!(before, after, "still in the machine's network namespace");
            f();
            assert_eq!(netns(), after);
        })
        .join()
        .expect("test thread");
    }
}
