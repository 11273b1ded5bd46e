//! `recvmsg(2)` with `SCM_RIGHTS`, written against libc so that descriptors received with a
//! truncated control buffer (`MSG_CTRUNC`) are still collected and closed, never leaked
//! (nix refuses to iterate control messages in that case).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Room for the control data of up to `max_fds` descriptors, as `u64` words so the buffer has
/// the alignment `cmsghdr` needs.
fn control_buffer(max_fds: usize) -> Vec<u64> {
    let payload = u32::try_from(max_fds * size_of::<RawFd>()).unwrap_or(u32::MAX);
    // SAFETY: CMSG_SPACE only computes a size from its argument.
    let bytes = unsafe { libc::CMSG_SPACE(payload) } as usize;
    vec![0u64; bytes.div_ceil(size_of::<u64>())]
}

/// Receives one datagram into `buf` with `MSG_CMSG_CLOEXEC`; returns its length, the
/// `msg_flags` (`MSG_TRUNC`, `MSG_CTRUNC`) and every descriptor that arrived.
pub(super) fn recvmsg_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> Result<(usize, libc::c_int, Vec<OwnedFd>), Errno> {
    let mut control = control_buffer(max_fds);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero bytes is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (control.len() * size_of::<u64>()) as _;
    // SAFETY: msg points at `iov` (covering `buf`) and `control`, all alive and exclusively
    // borrowed for the duration of the call; the kernel writes only within their lengths.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(Errno::last());
    }
    let mut fds = Vec::new();
    // SAFETY: msg was filled by a successful recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR stay within
    // msg_controllen, which the kernel set to the bytes it wrote (also on MSG_CTRUNC).
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points at a complete header inside `control`.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: data of this header; its length is cmsg_len minus the header's.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let header_len = data as usize - cmsg as usize;
            let count = (hdr.cmsg_len as usize).saturating_sub(header_len) / size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: i < count, so the read is inside this header's data; the data may
                // be unaligned for RawFd, hence read_unaligned.
                let raw = unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                // SAFETY: the kernel installed this descriptor for us; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n as usize, msg.msg_flags, fds))
}
