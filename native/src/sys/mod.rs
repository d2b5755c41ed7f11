//! Every raw system call of the crate, behind safe functions.
//!
//! socket2 covers dup, shutdown, SO_LINGER and the address and type queries;
//! what it lacks (the SIOCINQ/SIOCOUTQ ioctls, the TCP state, a discarding
//! `recv` that takes no buffer; epoll and eventfd in `epoll`; a thread's
//! own CPU time and context switches in `usage`, feature `diagnostics`; the
//! C library's names of errno values; the reactor thread's scheduling
//! policy) lives here, so that no other module calls the C library. The one
//! `unsafe` outside this module is the NIF's borrowing of a descriptor
//! number the VM holds (`nif::Fd`), which no system call can check: its
//! soundness rests on the Erlang side's reading the number again.

mod epoll;
#[cfg(feature = "diagnostics")]
mod usage;

pub use epoll::{Epoll, Event, EventFd};
#[cfg(feature = "diagnostics")]
pub use usage::{thread_usage, ThreadUsage};

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Turns a `-1` return of a libc call into the thread's `errno`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn ioctl_int(fd: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow, and
    // both requests used here write exactly one `int` through the pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut value) })?;
    // The kernel never reports a negative queue length.
    Ok(value as usize)
}

/// Bytes in the receive queue not yet read (SIOCINQ, which is FIONREAD).
///
/// Fails with `EINVAL` on a listening socket.
pub fn inq(fd: BorrowedFd<'_>) -> io::Result<usize> {
    ioctl_int(fd, libc::FIONREAD)
}

/// Bytes in the send queue not yet acknowledged by the peer (SIOCOUTQ, which
/// is TIOCOUTQ).
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<usize> {
    ioctl_int(fd, libc::TIOCOUTQ)
}

/// Bytes in the send queue not sent yet (SIOCOUTQNSD): of [`outq`], those
/// the peer has not even been sent.
pub fn outq_unsent(fd: BorrowedFd<'_>) -> io::Result<usize> {
    ioctl_int(fd, libc::SIOCOUTQNSD as libc::Ioctl)
}

/// The TCP state of the socket (`tcpi_state` of TCP_INFO, a `TCP_*` value
/// of the kernel's `tcp_states.h`).
///
/// Fails with `EOPNOTSUPP` on a socket that is not TCP.
pub fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<u8> {
    // tcpi_state is the first byte of struct tcp_info, and the kernel copies
    // only as much of the struct as asked for: one byte is all it takes.
    let mut state: u8 = 0;
    let mut len: libc::socklen_t = 1;
    // SAFETY: `fd` is live for the borrow; the kernel writes at most `len`
    // (one) bytes into `state` and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&mut state as *mut u8).cast(),
            &mut len,
        )
    })?;
    Ok(state)
}

/// What the reactor watches of a lingering connection: its state and how
/// far each side has got (from TCP_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpProgress {
    /// `tcpi_state`, a `TCP_*` value of the kernel's `tcp_states.h`.
    pub state: u8,
    /// Bytes of ours the peer has acknowledged (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Bytes received from the peer (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Bytes of data sent, retransmissions included (`tcpi_bytes_sent`).
    pub bytes_sent: u64,
    /// Bytes of data sent again (`tcpi_bytes_retrans`).
    pub bytes_retrans: u64,
    /// Whether the kernel gave the last two (Linux 4.19 and later).
    pub has_sent: bool,
}

impl TcpProgress {
    /// Data bytes sent, each counted once.
    fn data_sent(&self) -> u64 {
        self.bytes_sent.saturating_sub(self.bytes_retrans)
    }

    /// Whether our FIN has been acknowledged: the FIN takes one sequence
    /// number, which `tcpi_bytes_acked` counts and the data counts do not.
    /// So does our SYN on a connection we opened; `syn` is what
    /// [`TcpProgress::syn_acked`] said of it. Unlike the TCP state, this
    /// tells a graceful end from a reset once the connection is closed.
    /// `None` when the kernel is too old to say.
    pub fn fin_acked(&self, syn: u64) -> Option<bool> {
        let beyond_data = self.bytes_acked.saturating_sub(syn);
        self.has_sent.then_some(beyond_data > self.data_sent())
    }

    /// How much of `tcpi_bytes_acked` is our SYN: 1 on a connection this
    /// side opened (connect), 0 on one it accepted. `in_flight` is the data
    /// sent and not acknowledged yet, `fin_acked` whether our FIN has been:
    /// what is acknowledged beyond the data and that FIN is the SYN.
    pub fn syn_acked(&self, in_flight: u64, fin_acked: bool) -> u64 {
        let acked_data = self.data_sent().saturating_sub(in_flight);
        let beyond = self.bytes_acked.saturating_sub(acked_data);
        beyond.saturating_sub(u64::from(fin_acked)).min(1)
    }
}

/// Reads [`TcpProgress`] of a TCP socket. An older kernel copies a shorter
/// `struct tcp_info`; the byte counts it lacks are 0.
pub fn tcp_progress(fd: BorrowedFd<'_>) -> io::Result<TcpProgress> {
    // Offsets in struct tcp_info (linux/tcp.h), which only ever grows at
    // its end.
    const ACKED: usize = 120;
    const RECEIVED: usize = 128;
    const SENT: usize = 200;
    const RETRANS: usize = 208;
    let mut info = [0u8; RETRANS + 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `fd` is live for the borrow; the kernel writes at most `len`
    // bytes into `info` and sets `len` to what it wrote.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    let field = |at: usize| {
        let bytes = info.get(at..at + 8).filter(|_| len as usize >= at + 8);
        bytes.map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    };
    Ok(TcpProgress {
        state: info[0],
        bytes_acked: field(ACKED),
        bytes_received: field(RECEIVED),
        bytes_sent: field(SENT),
        bytes_retrans: field(RETRANS),
        has_sent: len as usize >= RETRANS + 8,
    })
}

/// Whether the socket is shut for reading: by the peer's FIN, or by our
/// own `shutdown(SHUT_RD)`. One `poll` with no wait: TCP reports POLLRDHUP
/// exactly while the receive side is shut (`tcp_poll`, RCV_SHUTDOWN),
/// whatever is still queued, where a `recv` would have to empty the queue
/// first to tell.
pub fn read_shut(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `fd` is live for the borrow; the kernel reads and writes the
    // one live pollfd, and a timeout of 0 never blocks.
    cvt(unsafe { libc::poll(&mut pollfd, 1, 0) })?;
    Ok(pollfd.revents & libc::POLLRDHUP != 0)
}

/// How many descriptors the process has open now. Linux 6.2 and later give
/// the count as the size of `/proc/self/fd` (a stat, no descriptor taken,
/// cheap however many are open); older kernels give 0 there, and then the
/// directory is read, a microsecond or so per open descriptor (the
/// directory's own, open while it is read, is not counted). Fails when
/// none is left to read it with.
pub fn descriptors_in_use() -> io::Result<u64> {
    let size = std::fs::metadata("/proc/self/fd")?.len();
    if size > 0 {
        return Ok(size);
    }
    let count = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(count.saturating_sub(1))
}

/// The process's soft limit of open descriptors (RLIMIT_NOFILE).
pub fn descriptor_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the kernel writes one rlimit into the live local.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    Ok(limit.rlim_cur)
}

/// Aborts the connection of `fd` now: the kernel drops both queues and sends
/// RST (`tcp_disconnect`, reached by connecting to an `AF_UNSPEC` address).
/// Unlike a close with SO_LINGER 0, this works while other descriptors of
/// the socket stay open, such as the VM's port still writing to it.
pub fn disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: sockaddr is plain integers, for which all zeroes is valid.
    let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `fd` is live for the borrow and `unspec` is a valid sockaddr
    // of `len` bytes for the duration of the call.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), &unspec, len) })?;
    Ok(())
}

/// Discards up to `len` queued bytes of a TCP socket without copying them
/// (`MSG_TRUNC`, Linux only for TCP) and without blocking.
///
/// Returns how many bytes were discarded; `Ok(0)` means the peer's FIN has
/// been reached.
pub fn recv_discard(fd: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel skips the copy to
    // user space, so it never dereferences the null buffer.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Keeps the shared library this code is part of loaded until the process
/// exits, whatever `dlclose` calls follow: the VM closes a NIF library when
/// its module is purged, while the reactor thread may still be running the
/// library's code and holding its statics. Asks the dynamic linker for the
/// library already loaded (`RTLD_NOLOAD`) and marks it `RTLD_NODELETE`.
///
/// Only meaningful in the NIF library: linked into an executable (the unit
/// tests), there is no library to find and it fails.
pub fn pin_this_library() -> io::Result<()> {
    static ANCHOR: u8 = 0;
    // SAFETY: Dl_info holds pointers and integers, for which all zeroes is
    // valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only looks the address up (it never dereferences it)
    // and writes one Dl_info into the live local.
    let found = unsafe { libc::dladdr(std::ptr::addr_of!(ANCHOR).cast(), &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "dladdr: no library",
        ));
    }
    let flags = libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE;
    // SAFETY: dli_fname is the dynamic linker's NUL-terminated name of the
    // library holding ANCHOR, which stays loaded while its code runs here.
    let handle = unsafe { libc::dlopen(info.dli_fname, flags) };
    if handle.is_null() {
        return Err(io::Error::other("dlopen: the library is not loaded"));
    }
    // SAFETY: `handle` came from the dlopen above and is closed once; this
    // gives back the reference that call took, and RTLD_NODELETE keeps the
    // library loaded after the last one.
    unsafe { libc::dlclose(handle) };
    Ok(())
}

extern "C" {
    // glibc 2.32 and later; the libc crate does not declare it.
    fn strerrorname_np(errnum: libc::c_int) -> *const libc::c_char;
}

/// The C library's name of `errno` (`"ECONNRESET"`), if it has one.
pub fn errno_symbol(errno: i32) -> Option<&'static str> {
    // SAFETY: strerrorname_np only reads its integer argument and returns
    // either NULL or a pointer to a constant string in the C library's
    // read-only data, valid for the life of the process.
    let name = unsafe { strerrorname_np(errno) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, so a NUL-terminated static string, as above.
    let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_str().ok()?;
    // glibc calls 0, which is no error, "0".
    name.starts_with('E').then_some(name)
}

/// Puts the calling thread under `SCHED_BATCH`: the kernel no longer lets
/// its wake-ups preempt a running thread, while it keeps its fair share of
/// the CPU.
pub fn batch_scheduling() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; the kernel reads one live
    // sched_param.
    cvt(unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) })?;
    Ok(())
}
