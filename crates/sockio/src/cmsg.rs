//! Ancillary (control) data for `sendmsg`/`recvmsg`-mode sockets: a builder
//! for what to send and an iterator over what arrived. The layout is the
//! kernel's (`include/linux/socket.h`: `struct cmsghdr`, `CMSG_ALIGN`,
//! `CMSG_LEN`, `CMSG_SPACE`; see cmsg(3)); it is computed here rather than
//! with libc's `CMSG_*` functions so parsing works on any byte slice.
use std::net::{Ipv4Addr, Ipv6Addr};

const ALIGN: usize = std::mem::size_of::<libc::c_long>();
const HDR: usize = std::mem::size_of::<libc::cmsghdr>();

const fn align(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Bytes one control message with `data_len` bytes of data takes
/// (`CMSG_SPACE`): size receive control buffers with it.
pub const fn space(data_len: usize) -> usize {
    align(HDR) + align(data_len)
}

/// Control messages to send, in kernel layout.
#[derive(Debug, Default, Clone)]
pub struct CmsgBuf {
    bytes: Vec<u8>,
}

impl CmsgBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append one message with raw `data`.
    pub fn push(&mut self, level: i32, ty: i32, data: &[u8]) -> &mut Self {
        let at = self.bytes.len();
        self.bytes.resize(at + space(data.len()), 0);
        let hdr = libc::cmsghdr {
            cmsg_len: (align(HDR) + data.len()) as _,
            cmsg_level: level,
            cmsg_type: ty,
        };
        // SAFETY: the vector was just grown by at least HDR bytes at `at`.
        unsafe {
            self.bytes
                .as_mut_ptr()
                .add(at)
                .cast::<libc::cmsghdr>()
                .write_unaligned(hdr)
        };
        let d = at + align(HDR);
        self.bytes[d..d + data.len()].copy_from_slice(data);
        self
    }

    /// Append one message whose data is a plain C value.
    pub fn push_value<T: Copy>(&mut self, level: i32, ty: i32, value: &T) -> &mut Self {
        // SAFETY: T is Copy plain data; we only read its bytes.
        let data = unsafe {
            std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
        };
        self.push(level, ty, data)
    }

    /// `IP_PKTINFO` selecting the source address of an IPv4 datagram (ip(7)).
    pub fn ipv4_source(&mut self, src: Ipv4Addr) -> &mut Self {
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(src).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        self.push_value(libc::IPPROTO_IP, libc::IP_PKTINFO, &info)
    }

    /// `IPV6_PKTINFO` selecting the source address of an IPv6 datagram (ipv6(7)).
    pub fn ipv6_source(&mut self, src: Ipv6Addr) -> &mut Self {
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            ipi6_ifindex: 0,
        };
        self.push_value(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// One received control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmsg<'a> {
    pub level: i32,
    pub ty: i32,
    pub data: &'a [u8],
}

impl Cmsg<'_> {
    /// The data as a plain C value, if the sizes match.
    pub fn value<T: Copy>(&self) -> Option<T> {
        (self.data.len() >= std::mem::size_of::<T>())
            // SAFETY: enough bytes; read_unaligned makes no alignment claim.
            .then(|| unsafe { self.data.as_ptr().cast::<T>().read_unaligned() })
    }

    /// `IP_PKTINFO`: (interface index, local destination address).
    pub fn ipv4_pktinfo(&self) -> Option<(u32, Ipv4Addr)> {
        if (self.level, self.ty) != (libc::IPPROTO_IP, libc::IP_PKTINFO) {
            return None;
        }
        let i: libc::in_pktinfo = self.value()?;
        Some((
            i.ipi_ifindex as u32,
            Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr)),
        ))
    }

    /// `IPV6_PKTINFO`: (interface index, destination address).
    pub fn ipv6_pktinfo(&self) -> Option<(u32, Ipv6Addr)> {
        if (self.level, self.ty) != (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) {
            return None;
        }
        let i: libc::in6_pktinfo = self.value()?;
        Some((i.ipi6_ifindex, Ipv6Addr::from(i.ipi6_addr.s6_addr)))
    }

    /// `SO_TIMESTAMPNS`: the kernel's receive time (CLOCK_REALTIME) in ns.
    pub fn timestamp_ns(&self) -> Option<u64> {
        if (self.level, self.ty) != (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS) {
            return None;
        }
        let ts: libc::timespec = self.value()?;
        Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
}

/// Iterate over the control messages in `control` (as `CMSG_FIRSTHDR` /
/// `CMSG_NXTHDR` do); a truncated trailing message ends the iteration.
pub fn parse(control: &[u8]) -> impl Iterator<Item = Cmsg<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + HDR > control.len() {
            return None;
        }
        // SAFETY: HDR bytes are in bounds; read_unaligned.
        let hdr = unsafe {
            control
                .as_ptr()
                .add(at)
                .cast::<libc::cmsghdr>()
                .read_unaligned()
        };
        let len = hdr.cmsg_len;
        if len < align(HDR) || at + len > control.len() {
            return None;
        }
        let data = &control[at + align(HDR)..at + len];
        at += align(len);
        Some(Cmsg {
            level: hdr.cmsg_level,
            ty: hdr.cmsg_type,
            data,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_messages_parse_back() {
        let mut b = CmsgBuf::new();
        b.ipv4_source(Ipv4Addr::new(198, 18, 0, 1))
            .push(1, 2, b"abc")
            .ipv6_source("2001:db8::7".parse().expect("static"));
        let got: Vec<Cmsg<'_>> = parse(b.as_bytes()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].data, b"abc");
        assert_eq!(got[1].level, 1);
        assert_eq!(b.as_bytes().len(), space(12) + space(3) + space(20));
        let info: libc::in_pktinfo = got[0].value().expect("pktinfo");
        assert_eq!(
            Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)),
            Ipv4Addr::new(198, 18, 0, 1)
        );
        assert_eq!(
            got[2].ipv6_pktinfo().map(|(_, a)| a),
            Some("2001:db8::7".parse().expect("static"))
        );
        // A cut-off message is not returned.
        assert_eq!(parse(&b.as_bytes()[..space(12) + 4]).count(), 1);
    }
}
