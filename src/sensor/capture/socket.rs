//! The packet socket: `AF_PACKET`, `SOCK_DGRAM`, every protocol
//! (`ETH_P_ALL`), one interface or all, the [`bpf`] filter
//! attached, non-blocking under tokio's [`AsyncFd`].
//!
//! **Passive.** A packet socket is a tap: the kernel hands it a clone of
//! each packet after deciding the packet's fate, so a full queue drops
//! the sensor's copy (counted in [`Stats::drops`]), never the packet. The
//! socket never sends, never puts the interface in promiscuous mode, and sets no
//! fanout or queue-bypass option. What it costs the kernel's path is
//! running the filter (a few dozen instructions, JIT-compiled where the
//! kernel has a BPF JIT) on each packet of the interface.
//!
//! **Both directions.** `ETH_P_ALL` taps see outgoing packets too
//! (`PACKET_OUTGOING`, the PBX's answers) as well as incoming ones;
//! `PACKET_IGNORE_OUTGOING` is left off. `SOCK_DGRAM` strips the link
//! header both ways, so the filter and [`Frame::data`] start at the
//! network header.
//!
//! **Nothing unfiltered is queued.** The socket is created with protocol 0
//! (no packets at all), a drop-all filter is attached, the socket is bound
//! (packets start flowing, all dropped), whatever raced in is drained, and
//! only then is the real filter swapped in. The counters are read once so
//! [`Capture::stats`] starts at zero.
//!
//! **One `recvmsg` per packet, no `PACKET_MMAP` ring.** Measured (release
//! build, 2 cores) on a veth pair between two namespaces, 400-byte UDP
//! datagrams to 5060 from a `sendmmsg` loop: with sender and capture
//! running together the sender reaches ~50k packets/s and the capture
//! gets every one (0 drops, 100 and 400 bytes alike). Draining a full
//! queue alone, this loop costs ~2 µs of CPU per packet through tokio
//! (~400k packets/s), `recvmmsg` in batches of 32 ~1.3 µs (~700k/s).
//! Both are an order of magnitude above a SIPVicious flood (thousands of
//! requests per second), and the filter already keeps everything else
//! out of the queue; what a packet costs after capture (decoding, SIP
//! parsing, the policy) dominates. A ring (or `recvmmsg`) would save part
//! of a syscall and a copy per packet for a fixed mapping of MiBs (or a
//! batch of 64 KiB buffers) and the code to walk it: it does not pay. A
//! big `SO_RCVBUF` absorbs bursts instead (32 MiB holds ~26,000 small
//! packets: the kernel charges ~1.3 KB per queued packet).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use libc::{c_int, sock_filter};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::bpf::{self, FilterError, PortMatch};
use super::frame::{Direction, EtherType, FRAME_MAX, Frame};
use super::interface::Interface;
use super::sys::{
    attach, bind, bound_index, drain, read_statistics, receive, set_receive_buffer, setsockopt,
};

/// The default receive buffer, 32 MiB: ~26,000 small packets (the kernel
/// charges ~1.3 KB for each), half a second of a 50k packets/s flood with
/// nobody reading. Above `net.core.rmem_max` it needs `CAP_NET_ADMIN`
/// (`SO_RCVBUFFORCE`); without it the kernel's cap applies, with a warning.
pub const DEFAULT_RECEIVE_BUFFER: usize = 32 << 20;

/// How a capture is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Bytes of queued packets the kernel may hold for the sensor (the
    /// kernel counts its own overhead per packet in it).
    pub receive_buffer: usize,
    /// The most bytes of a packet kept in a [`Frame`]; longer packets are
    /// truncated and flagged. Taken as 1 to [`FRAME_MAX`].
    pub max_frame: usize,
}

impl Default for CaptureOptions {
    fn default() -> CaptureOptions {
        CaptureOptions {
            receive_buffer: DEFAULT_RECEIVE_BUFFER,
            max_frame: FRAME_MAX,
        }
    }
}

/// Why a capture could not open or receive. Each names its interface.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "capture on {interface}: packet sockets need CAP_NET_RAW (run as root or grant the capability): {source}"
    )]
    Permission {
        interface: Interface,
        #[source]
        source: io::Error,
    },
    #[error("capture on {interface}: no such network interface")]
    UnknownInterface { interface: Interface },
    /// Not fatal: the kernel resumes the capture when the link comes up.
    #[error("capture on {interface}: the interface is down")]
    InterfaceDown { interface: Interface },
    /// Fatal: the socket is unbound; open a new capture.
    #[error("capture on {interface}: the interface went away")]
    InterfaceGone { interface: Interface },
    #[error("capture on {interface}: {source}")]
    Filter {
        interface: Interface,
        #[source]
        source: FilterError,
    },
    #[error("capture on {interface}: cannot {op}: {source}")]
    Io {
        interface: Interface,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The kernel's counters since the capture opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets the filter kept, queued or not.
    pub packets: u64,
    /// Kept packets the sensor lost because its queue was full.
    pub drops: u64,
}

impl Stats {
    /// Packets queued for the sensor.
    pub fn delivered(&self) -> u64 {
        self.packets.saturating_sub(self.drops)
    }
}

/// A live capture. See the module doc.
pub struct Capture {
    fd: AsyncFd<OwnedFd>,
    buf: Box<[u8]>,
    interface: Interface,
    /// The index bound to (0 = all interfaces).
    ifindex: c_int,
    /// The link went down: the receive also polls for its deletion.
    down: bool,
    receive_buffer: usize,
    /// `PACKET_STATISTICS` resets the kernel's counters on each read.
    totals: Mutex<Stats>,
}

impl Capture {
    /// A capture of the packets to or from `ports`, with the default
    /// options. Must be called inside a tokio runtime.
    pub fn open(interface: &Interface, ports: &[PortMatch]) -> Result<Capture, CaptureError> {
        let filter = bpf::program(ports).map_err(|source| CaptureError::Filter {
            interface: interface.clone(),
            source,
        })?;
        Capture::open_with(interface, &filter, &CaptureOptions::default())
    }

    /// A capture with a filter of the caller's (a classic BPF program for a
    /// `SOCK_DGRAM` packet socket). Must be called inside a tokio runtime.
    pub fn open_with(
        interface: &Interface,
        filter: &[sock_filter],
        options: &CaptureOptions,
    ) -> Result<Capture, CaptureError> {
        let io_err = |op| {
            move |source| CaptureError::Io {
                interface: interface.clone(),
                op,
                source,
            }
        };
        if filter.len() > bpf::MAX_INSTRUCTIONS {
            return Err(CaptureError::Filter {
                interface: interface.clone(),
                source: FilterError::TooLong {
                    needed: filter.len(),
                    max: bpf::MAX_INSTRUCTIONS,
                },
            });
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io_err("register with tokio")(io::Error::other(
                "not inside a tokio runtime",
            )));
        }
        let ifindex = interface.index()?;

        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => CaptureError::Permission {
                    interface: interface.clone(),
                    source,
                },
                _ => io_err("open a packet socket")(source),
            });
        }
        // SAFETY: `raw` is a fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();

        attach(s, &bpf::drop_all()).map_err(io_err("attach the drop-all filter"))?;
        let receive_buffer = set_receive_buffer(s, options.receive_buffer)
            .map_err(io_err("set the receive buffer"))?;
        if receive_buffer < options.receive_buffer {
            tracing::warn!(
                "capture on {interface}: receive buffer {receive_buffer} bytes, not {} (net.core.rmem_max, no CAP_NET_ADMIN)",
                options.receive_buffer
            );
        }
        setsockopt(s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1 as &c_int)
            .map_err(io_err("ask for timestamps"))?;
        bind(s, ifindex).map_err(|source| match source.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => CaptureError::UnknownInterface {
                interface: interface.clone(),
            },
            _ => io_err("bind the packet socket")(source),
        })?;
        let down = drain(s).map_err(io_err("drain the socket"))?;
        if down {
            tracing::warn!(
                "capture on {interface}: the interface is down; capturing once it is up"
            );
        }
        attach(s, filter).map_err(io_err("attach the filter"))?;
        read_statistics(s).map_err(io_err("reset the statistics"))?;

        // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open
        // (and the same descriptor) until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, WAKE_ON) }
            .map_err(|e| io_err("register with tokio")(io::Error::from(e)))?;
        Ok(Capture {
            fd,
            buf: vec![0u8; options.max_frame.clamp(1, FRAME_MAX)].into_boxed_slice(),
            interface: interface.clone(),
            ifindex,
            down,
            receive_buffer,
            totals: Mutex::new(Stats::default()),
        })
    }

    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// The receive buffer the kernel granted (`SO_RCVBUF`, which it
    /// doubles to account for its overhead).
    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }

    /// The next packet the filter kept. Cancel-safe: a packet is only
    /// taken off the queue when this returns it.
    ///
    /// When the interface goes down this returns
    /// [`CaptureError::InterfaceDown`] once, and packets come again once it
    /// is up; when it is deleted, [`CaptureError::InterfaceGone`] (the
    /// socket is unbound for good).
    pub async fn recv(&mut self) -> Result<Frame<'_>, CaptureError> {
        let Capture {
            fd,
            buf,
            interface,
            ifindex,
            down,
            ..
        } = self;
        let wait_err = |source| CaptureError::Io {
            interface: interface.clone(),
            op: "wait for packets",
            source,
        };
        let gone = || CaptureError::InterfaceGone {
            interface: interface.clone(),
        };
        let raw = fd.get_ref().as_raw_fd();
        let meta = loop {
            // ERROR too: a link going down or away only raises EPOLLERR.
            let mut guard = if *down {
                // Deleting a link that is down wakes nobody: look.
                match tokio::time::timeout(DOWN_POLL, fd.ready(WAKE_ON)).await {
                    Ok(ready) => ready.map_err(wait_err)?,
                    Err(_) if bound_index(raw).ok() == Some(*ifindex) => continue,
                    Err(_) => return Err(gone()),
                }
            } else {
                fd.ready(WAKE_ON).await.map_err(wait_err)?
            };
            match guard.try_io(|fd| receive(fd.as_raw_fd(), buf)) {
                Ok(result) => break result,
                Err(_would_block) => continue,
            }
        };
        let meta = match meta {
            Ok(meta) => meta,
            // Deleting a link takes it down first: the socket only says
            // "down"; whether it is still bound tells the two apart.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETDOWN | libc::ENODEV | libc::ENXIO)
                ) =>
            {
                if bound_index(raw).ok() != Some(*ifindex) {
                    return Err(gone());
                }
                *down = true;
                return Err(CaptureError::InterfaceDown {
                    interface: interface.clone(),
                });
            }
            Err(source) => {
                return Err(CaptureError::Io {
                    interface: interface.clone(),
                    op: "receive",
                    source,
                });
            }
        };
        *down = false;
        Ok(Frame {
            data: buf.get(..meta.len.min(buf.len())).unwrap_or_default(),
            len: meta.len,
            ethertype: EtherType::from_u16(meta.protocol),
            ifindex: meta.ifindex,
            direction: Direction::from_pkttype(meta.pkttype),
            timestamp: meta.timestamp.unwrap_or_else(SystemTime::now),
        })
    }

    /// The kernel's counters since the capture opened.
    pub fn stats(&self) -> Result<Stats, CaptureError> {
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let delta =
            read_statistics(self.fd.get_ref().as_raw_fd()).map_err(|source| CaptureError::Io {
                interface: self.interface.clone(),
                op: "read PACKET_STATISTICS",
                source,
            })?;
        totals.packets = totals.packets.saturating_add(u64::from(delta.tp_packets));
        totals.drops = totals.drops.saturating_add(u64::from(delta.tp_drops));
        Ok(*totals)
    }
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("interface", &self.interface)
            .field("fd", &self.fd.get_ref().as_raw_fd())
            .finish()
    }
}

/// How often a receive on a link that is down checks it still exists.
const DOWN_POLL: Duration = Duration::from_secs(1);

/// What wakes a receive: a packet, or an error on the socket.
const WAKE_ON: Interest = Interest::READABLE.add(Interest::ERROR);
