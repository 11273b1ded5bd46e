//! The same plain relay as [`super::relay`], but moving bytes with `splice(2)` through a pipe:
//! socket to pipe to socket, with no copy into or out of user space. No proxy that has to see
//! the bytes (to encrypt them, say) can do less work per byte, so the benchmark's `splice`
//! column is the upper bound of any node proxy that terminates TCP on this machine.
//!
//! Blocking threads, one per direction of each connection: the benchmark opens a handful of
//! long transfers, and a thread per direction keeps the data path free of any reactor.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};

use super::relay::Route;

/// Pipe capacity, and the most one `splice` call moves: as large as ztunnel's biggest read.
const PIPE_SIZE: usize = 256 * 1024;

/// Binds every route, calls `ready` once all listen, then relays until the process ends.
pub fn splice_relay(routes: &[Route], ready: impl FnOnce(&[SocketAddr])) -> io::Result<()> {
    let listeners = routes
        .iter()
        .map(|r| Ok((TcpListener::bind(r.listen)?, r.to)))
        .collect::<io::Result<Vec<_>>>()?;
    let addrs = listeners
        .iter()
        .map(|(l, _)| l.local_addr())
        .collect::<io::Result<Vec<_>>>()?;
    ready(&addrs);
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(listener, to)| std::thread::spawn(move || accept_loop(&listener, to)))
        .collect();
    for l in loops {
        match l.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("an accept loop panicked")),
        }
    }
    Ok(())
}

fn accept_loop(listener: &TcpListener, to: SocketAddr) -> io::Result<()> {
    loop {
        let (inbound, _) = listener.accept()?;
        std::thread::spawn(move || {
            // A failed connection only ends that connection: the client sees the close.
            let _ = relay_one(inbound, to);
        });
    }
}

fn relay_one(inbound: TcpStream, to: SocketAddr) -> io::Result<()> {
    let outbound = TcpStream::connect(to)?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let (in2, out2) = (inbound.try_clone()?, outbound.try_clone()?);
    let back = std::thread::spawn(move || pump(&out2, &in2));
    let forth = pump(&inbound, &outbound);
    let back = back
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a relay thread panicked")));
    forth.and(back).map(drop)
}

/// Moves everything `from` sends to `to`, then half-closes `to`; returns the bytes moved.
fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_r, pipe_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // A larger pipe lets one call move a whole socket buffer; refusal only means smaller moves.
    let _ = nix::fcntl::fcntl(
        &pipe_w,
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32),
    );
    let mut total = 0u64;
    loop {
        let n = splice(from, &pipe_w, PIPE_SIZE)?;
        if n == 0 {
            break;
        }
        let mut left = n;
        while left > 0 {
            let m = splice(&pipe_r, to, left)?;
            if m == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the destination stopped taking bytes",
                ));
            }
            left -= m;
        }
        total += n as u64;
    }
    // The peer may already have closed both ways; the half-close is then moot.
    let _ = to.shutdown(Shutdown::Write);
    Ok(total)
}

/// One blocking `splice(2)` of up to `len` bytes, retried on EINTR.
fn splice(from: &impl AsFd, to: &impl AsFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: both descriptors are open for the duration of the call (borrowed), and the
        // offsets are null, as they must be for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from.as_fd().as_raw_fd(),
                std::ptr::null_mut(),
                to.as_fd().as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_both_ways_with_half_close() {
        // More than one pipe's worth, so the loop runs more than once.
        let payload: Vec<u8> = (0..3 * PIPE_SIZE + 17).map(|i| (i % 251) as u8).collect();
        super::super::relay::tests::echo_through(payload, |route, ready| {
            let _ = splice_relay(&[route], ready);
        });
    }
}
