//! Socket addresses as the kernel writes them (`sockaddr_storage` plus its
//! length), so a receive never parses an address nobody asks for, and
//! every family (IPv4, IPv6, unix) fits.
use std::{
    fmt,
    hash::{Hash, Hasher},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
};

/// A socket address of any family.
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    /// No address (length 0), e.g. an unbound unix datagram peer.
    pub fn empty() -> Self {
        // SAFETY: all-zero is a valid sockaddr_storage.
        Self {
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }

    /// Copy `len` bytes of a raw address.
    ///
    /// # Panics
    /// If `raw` is longer than a `sockaddr_storage`.
    pub fn from_bytes(raw: &[u8]) -> Self {
        let mut a = Self::empty();
        assert!(raw.len() <= std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: bounds checked above; sockaddr_storage is plain bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                raw.as_ptr(),
                (&mut a.storage as *mut libc::sockaddr_storage).cast::<u8>(),
                raw.len(),
            );
        }
        a.len = raw.len() as libc::socklen_t;
        a
    }

    pub fn family(&self) -> libc::sa_family_t {
        if self.len == 0 {
            libc::AF_UNSPEC as libc::sa_family_t
        } else {
            self.storage.ss_family
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `len` never exceeds the storage size.
        unsafe {
            std::slice::from_raw_parts(
                (&self.storage as *const libc::sockaddr_storage).cast::<u8>(),
                self.len as usize,
            )
        }
    }

    /// The IPv4/IPv6 address, if it is one.
    pub fn as_socket(&self) -> Option<SocketAddr> {
        let p = (&self.storage as *const libc::sockaddr_storage).cast::<u8>();
        match self.family() as i32 {
            libc::AF_INET if self.len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: family and length say it is a sockaddr_in.
                let sin = unsafe { p.cast::<libc::sockaddr_in>().read_unaligned() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if self.len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: family and length say it is a sockaddr_in6.
                let sin6 = unsafe { p.cast::<libc::sockaddr_in6>().read_unaligned() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    pub(crate) fn socklen(&self) -> libc::socklen_t {
        self.len
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(a: SocketAddr) -> Self {
        let mut out = Self::empty();
        let p = (&mut out.storage as *mut libc::sockaddr_storage).cast::<u8>();
        match a {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in.
                unsafe { p.cast::<libc::sockaddr_in>().write_unaligned(sin) };
                out.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in6.
                unsafe { p.cast::<libc::sockaddr_in6>().write_unaligned(sin6) };
                out.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        out
    }
}

impl PartialEq for SockAddr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SockAddr {}

impl Hash for SockAddr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_socket() {
            Some(s) => write!(f, "{s}"),
            None if self.family() as i32 == libc::AF_UNIX => {
                // sun_path follows the 2-byte family; an abstract name starts
                // with NUL (unix(7)).
                let path = &self.as_bytes()[2.min(self.len())..];
                match path.first() {
                    None => f.write_str("unix:(unnamed)"),
                    Some(0) => write!(f, "unix:@{}", String::from_utf8_lossy(&path[1..])),
                    Some(_) => {
                        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                        write!(f, "unix:{}", String::from_utf8_lossy(&path[..end]))
                    }
                }
            }
            None if self.is_empty() => f.write_str("(none)"),
            None => write!(f, "family {} ({} bytes)", self.family(), self.len),
        }
    }
}

impl fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SockAddr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_addresses_round_trip() {
        for s in ["198.18.1.2:9000", "[2001:db8::1]:53", "0.0.0.0:0"] {
            let a: SocketAddr = s.parse().expect("static");
            let sa = SockAddr::from(a);
            assert_eq!(sa.as_socket(), Some(a), "{s}");
            assert_eq!(sa.to_string(), a.to_string());
            assert_eq!(SockAddr::from_bytes(sa.as_bytes()), sa);
        }
        assert_eq!(SockAddr::empty().as_socket(), None);
    }
}
