//! What XDP needs to know about an interface (MAC, MTU, up, VLAN parent and
//! id), read with ioctls on a socket of the calling thread's namespace.
//! sysfs would show the namespace /sys was mounted in, not ours.
//! The netlink sync replaces this with live link events.
use std::{ffi::CString, io};

use crate::fib::Iface;

#[derive(Debug, thiserror::Error)]
pub enum IfInfoError {
    #[error("no interface named {0:?} in this network namespace")]
    NoSuchInterface(String),
    #[error("reading {what} of {iface}: {source}")]
    Ioctl {
        iface: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// `struct vlan_ioctl_args` (include/uapi/linux/if_vlan.h).
#[repr(C)]
struct VlanIoctlArgs {
    cmd: libc::c_int,
    device1: [libc::c_char; 24],
    u: [libc::c_char; 24],
    vlan_qos: libc::c_short,
}
const SIOCGIFVLAN: libc::c_ulong = 0x8982;
const GET_VLAN_REALDEV_NAME_CMD: libc::c_int = 8;
const GET_VLAN_VID_CMD: libc::c_int = 9;

struct Sock(libc::c_int);
impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.0) };
    }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    r
}

fn c_name(buf: &[libc::c_char]) -> String {
    buf.iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8 as char)
        .collect()
}

/// Read `name`'s properties. VLAN sub-interfaces (8021q devices) report their
/// parent's ifindex and their VLAN id.
pub fn read(name: &str) -> Result<Iface, IfInfoError> {
    let c = CString::new(name).map_err(|_| IfInfoError::NoSuchInterface(name.into()))?;
    // SAFETY: valid C string.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(IfInfoError::NoSuchInterface(name.into()));
    }
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(IfInfoError::Ioctl {
            iface: name.into(),
            what: "a socket",
            source: io::Error::last_os_error(),
        });
    }
    let sock = Sock(fd);
    let ioctl = |req: libc::c_ulong, what: &'static str| -> Result<libc::ifreq, IfInfoError> {
        let mut r = ifreq(name);
        // SAFETY: r is a valid ifreq for these requests.
        if unsafe { libc::ioctl(sock.0, req as _, &mut r) } < 0 {
            return Err(IfInfoError::Ioctl {
                iface: name.into(),
                what,
                source: io::Error::last_os_error(),
            });
        }
        Ok(r)
    };
    let hw = ioctl(libc::SIOCGIFHWADDR, "the MAC address")?;
    let mtu = ioctl(libc::SIOCGIFMTU, "the MTU")?;
    let flags = ioctl(libc::SIOCGIFFLAGS, "the flags")?;
    // SAFETY: the union members the kernel filled for each request.
    let (mac, mtu, flags) = unsafe {
        let d = hw.ifr_ifru.ifru_hwaddr.sa_data;
        (
            [
                d[0] as u8, d[1] as u8, d[2] as u8, d[3] as u8, d[4] as u8, d[5] as u8,
            ],
            mtu.ifr_ifru.ifru_mtu as u32,
            flags.ifr_ifru.ifru_flags as i32,
        )
    };
    let (vlan_id, parent_ifindex) = match vlan_of(sock.0, name) {
        Some((parent, vid)) => {
            let pc = CString::new(parent.clone())
                .map_err(|_| IfInfoError::NoSuchInterface(parent.clone()))?;
            // SAFETY: valid C string.
            let p = unsafe { libc::if_nametoindex(pc.as_ptr()) };
            if p == 0 {
                return Err(IfInfoError::NoSuchInterface(parent));
            }
            (vid, p)
        }
        None => (0, ifindex),
    };
    Ok(Iface {
        ifindex,
        name: name.to_owned(),
        mac,
        mtu,
        vlan_id,
        parent_ifindex,
        up: flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0,
    })
}

/// [`read`] by ifindex.
pub fn read_index(ifindex: u32) -> Result<Iface, IfInfoError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    if unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) }.is_null() {
        return Err(IfInfoError::NoSuchInterface(format!("ifindex {ifindex}")));
    }
    read(&c_name(&buf))
}

/// (parent name, VLAN id) if `name` is an 802.1Q device.
fn vlan_of(fd: libc::c_int, name: &str) -> Option<(String, u32)> {
    let args = |cmd| {
        // SAFETY: plain data.
        let mut a: VlanIoctlArgs = unsafe { std::mem::zeroed() };
        a.cmd = cmd;
        for (d, s) in a.device1.iter_mut().zip(name.bytes().take(23)) {
            *d = s as libc::c_char;
        }
        a
    };
    let mut a = args(GET_VLAN_REALDEV_NAME_CMD);
    // SAFETY: a is a valid vlan_ioctl_args.
    if unsafe { libc::ioctl(fd, SIOCGIFVLAN as _, &mut a) } < 0 {
        return None;
    }
    let parent = c_name(&a.u);
    let mut v = args(GET_VLAN_VID_CMD);
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd, SIOCGIFVLAN as _, &mut v) } < 0 {
        return None;
    }
    // The VID is the union's first int.
    let vid = i32::from_ne_bytes([v.u[0] as u8, v.u[1] as u8, v.u[2] as u8, v.u[3] as u8]);
    Some((parent, vid as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_read_and_missing_is_a_clear_error() {
        let lo = read("lo").expect("lo");
        assert_eq!(lo.ifindex, 1);
        assert_eq!(lo.vlan_id, 0);
        assert_eq!(lo.parent_ifindex, 1);
        assert!(lo.mtu >= 1500);
        let err = read("nope0").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "no interface named \"nope0\" in this network namespace"
        );
    }
}
