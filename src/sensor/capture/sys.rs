//! The raw syscalls of the packet socket, each with its `unsafe` kept to
//! one call on memory it owns: socket options, bind, the drain, the
//! counters, and `recvmsg` with its timestamp.

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime};

use libc::{c_int, c_void, sock_filter, socklen_t};

/// The interface index the socket is bound to (-1 once its interface was
/// deleted).
pub(super) fn bound_index(fd: RawFd) -> io::Result<c_int> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut len =
        socklen_t::try_from(mem::size_of::<libc::sockaddr_ll>()).map_err(io::Error::other)?;
    // SAFETY: `sll` is `len` writable bytes.
    let rc =
        unsafe { libc::getsockname(fd, (&mut sll as *mut libc::sockaddr_ll).cast(), &mut len) };
    if rc == 0 {
        Ok(sll.sll_ifindex)
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(super) fn setsockopt<T>(fd: RawFd, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    let len = socklen_t::try_from(mem::size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` points to `len` readable bytes for the call.
    let rc =
        unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast::<c_void>(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt<T: Copy>(fd: RawFd, level: c_int, name: c_int, mut value: T) -> io::Result<T> {
    let mut len = socklen_t::try_from(mem::size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` is `len` writable bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Replaces the socket's filter (the kernel copies the program).
pub(super) fn attach(fd: RawFd, program: &[sock_filter]) -> io::Result<()> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Asks for `bytes` of receive buffer, past `rmem_max` if allowed;
/// returns what the kernel granted.
pub(super) fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    // The kernel doubles the value and caps it at INT_MAX.
    let want = c_int::try_from(bytes / 2).unwrap_or(c_int::MAX / 2);
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &want).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &want)?;
    }
    let got: c_int = getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 0)?;
    Ok(usize::try_from(got).unwrap_or(0))
}

pub(super) fn bind(fd: RawFd, ifindex: c_int) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex;
    let len = socklen_t::try_from(mem::size_of::<libc::sockaddr_ll>()).map_err(io::Error::other)?;
    // SAFETY: `sll` is a sockaddr_ll of `len` bytes for the call.
    let rc = unsafe { libc::bind(fd, (&sll as *const libc::sockaddr_ll).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Discards what was queued before the real filter (nothing, with the
/// drop-all filter in place; bounded all the same). Returns whether the
/// link is down.
pub(super) fn drain(fd: RawFd) -> io::Result<bool> {
    let mut down = false;
    let mut scratch = [0u8; 1];
    for _ in 0..1_000_000 {
        // SAFETY: `scratch` is writable for its length.
        let n = unsafe {
            libc::recv(
                fd,
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n >= 0 {
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(down),
            Some(libc::EINTR) => {}
            // Reported once by bind on a link that is down; the kernel
            // hooks the socket in when the link comes up.
            Some(libc::ENETDOWN) => down = true,
            _ => return Err(e),
        }
    }
    Ok(down)
}

/// Reads (and so resets) the kernel's counters.
pub(super) fn read_statistics(fd: RawFd) -> io::Result<libc::tpacket_stats> {
    getsockopt(
        fd,
        libc::SOL_PACKET,
        libc::PACKET_STATISTICS,
        libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        },
    )
}

/// What the kernel said about one received packet.
pub(super) struct Meta {
    pub len: usize,
    pub protocol: u16,
    pub ifindex: u32,
    pub pkttype: u8,
    pub timestamp: Option<SystemTime>,
}

/// Room for one `SCM_TIMESTAMPNS` (and a spare), aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// One `recvmsg`: the packet into `buf` (truncated to it), its real length
/// (`MSG_TRUNC`), address and timestamp.
pub(super) fn receive(fd: RawFd, buf: &mut [u8]) -> io::Result<Meta> {
    // SAFETY: all-zero is a valid sockaddr_ll and msghdr.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    let n = loop {
        // SAFETY: every pointer in `msg` is valid for its length.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    Ok(Meta {
        len: usize::try_from(n).unwrap_or(0),
        protocol: u16::from_be(addr.sll_protocol),
        ifindex: u32::try_from(addr.sll_ifindex).unwrap_or(0),
        pkttype: addr.sll_pkttype,
        timestamp: timestamp(&msg),
    })
}

/// The `SCM_TIMESTAMPNS` of a received message, if any.
fn timestamp(msg: &libc::msghdr) -> Option<SystemTime> {
    let want = mem::size_of::<libc::timespec>();
    // SAFETY: the CMSG_* walk stays inside `msg_control`/`msg_controllen`,
    // which the kernel filled; the payload is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET
                && c.cmsg_type == libc::SCM_TIMESTAMPNS
                && c.cmsg_len as usize >= libc::CMSG_LEN(want as u32) as usize
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                let secs = u64::try_from(ts.tv_sec).ok()?;
                let nanos = u32::try_from(ts.tv_nsec)
                    .ok()
                    .filter(|n| *n < 1_000_000_000)?;
                return SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}
