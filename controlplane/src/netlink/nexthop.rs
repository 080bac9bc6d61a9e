//! Nexthop objects (RTM_NEWNEXTHOP, Linux 5.3+), which FRR uses for every
//! route (`RTA_NH_ID`). netlink-packet-route 0.34 does not parse them, so
//! this module speaks that part of rtnetlink itself, following
//! include/uapi/linux/nexthop.h: `struct nhmsg` and the `NHA_*` attributes.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::{KNextHop, KernelEvent, NetlinkError, NhObject};

const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RTM_GETNEXTHOP: u16 = 106;
const RTNLGRP_NEXTHOP: u32 = 32;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NLMSG_HDRLEN: usize = 16;
const NHMSG_LEN: usize = 8;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// Parse one nexthop message body (after the netlink header).
fn parse_nhmsg(kind: u16, body: &[u8]) -> Option<KernelEvent> {
    let family = *body.first()?;
    let mut off = NHMSG_LEN;
    let (mut id, mut oif, mut gw, mut group, mut blackhole) = (None, None, None, None, false);
    while off + 4 <= body.len() {
        let len = u16_at(body, off)? as usize;
        let ty = u16_at(body, off + 2)? & 0x3fff;
        if len < 4 || off + len > body.len() {
            return None;
        }
        let v = &body[off + 4..off + len];
        match ty {
            NHA_ID => id = u32_at(v, 0),
            NHA_OIF => oif = u32_at(v, 0),
            NHA_BLACKHOLE => blackhole = true,
            NHA_GATEWAY => {
                gw = match (family, v.len()) {
                    (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
                    (AF_INET6, 16) => {
                        let a: [u8; 16] = v.try_into().ok()?;
                        Some(IpAddr::V6(Ipv6Addr::from(a)))
                    }
                    _ => None,
                }
            }
            // struct nexthop_grp { u32 id; u8 weight; u8 weight_high; u16 resvd2 }
            NHA_GROUP => group = Some(v.chunks_exact(8).filter_map(|c| u32_at(c, 0)).collect()),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    let id = id?;
    if kind == RTM_DELNEXTHOP {
        return Some(KernelEvent::NexthopGone(id));
    }
    let obj = if blackhole {
        NhObject::Blackhole
    } else if let Some(members) = group {
        NhObject::Group(members)
    } else {
        NhObject::Single(KNextHop {
            gateway: gw,
            ifindex: oif?,
        })
    };
    Some(KernelEvent::Nexthop(id, obj))
}

/// Parse a datagram of netlink messages. Returns the events and whether
/// the dump is done (NLMSG_DONE seen).
pub fn parse_datagram(buf: &[u8]) -> Result<(Vec<KernelEvent>, bool), NetlinkError> {
    let mut events = Vec::new();
    let mut off = 0;
    let mut done = false;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, off).unwrap_or(0) as usize;
        let ty = u16_at(buf, off + 4).unwrap_or(0);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let body = &buf[off + NLMSG_HDRLEN..off + len];
        match ty {
            NLMSG_DONE => done = true,
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).unwrap_or(0) as i32;
                if errno != 0 {
                    return Err(NetlinkError::Dump {
                        what: "nexthops",
                        reason: std::io::Error::from_raw_os_error(-errno).to_string(),
                    });
                }
            }
            RTM_NEWNEXTHOP | RTM_DELNEXTHOP if body.len() >= NHMSG_LEN => {
                if let Some(ev) = parse_nhmsg(ty, body) {
                    events.push(ev);
                }
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok((events, done))
}

/// A socket subscribed to nexthop events.
pub fn subscribe(rcvbuf: Option<usize>) -> Result<Socket, NetlinkError> {
    let mut s = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
    s.bind_auto().map_err(NetlinkError::Socket)?;
    super::source::set_rcvbuf(&s, rcvbuf)?;
    s.add_membership(RTNLGRP_NEXTHOP)
        .map_err(NetlinkError::Socket)?;
    Ok(s)
}

/// Dump every nexthop object (on a socket of its own, so dump replies and
/// events do not interleave).
pub fn dump() -> Result<Vec<KernelEvent>, NetlinkError> {
    let mut s = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
    s.bind_auto().map_err(NetlinkError::Socket)?;
    s.connect(&SocketAddr::new(0, 0))
        .map_err(NetlinkError::Socket)?;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + NHMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + NHMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETNEXTHOP.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    req.extend_from_slice(&[0u8; NHMSG_LEN]); // AF_UNSPEC: every family
    s.send(&req, 0).map_err(NetlinkError::Socket)?;
    let mut all = Vec::new();
    loop {
        let (buf, _) = s.recv_from_full().map_err(NetlinkError::Socket)?;
        let (events, done) = parse_datagram(&buf)?;
        all.extend(events);
        if done {
            return Ok(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(v);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn msg(ty: u16, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0, 0, 0, 0, 0];
        for a in attrs {
            body.extend_from_slice(a);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn single_group_blackhole_and_delete_parse() {
        let mut d = msg(
            RTM_NEWNEXTHOP,
            AF_INET,
            &[
                nla(NHA_ID, &7u32.to_ne_bytes()),
                nla(NHA_GATEWAY, &[198, 18, 2, 2]),
                nla(NHA_OIF, &3u32.to_ne_bytes()),
            ],
        );
        let mut grp = Vec::new();
        for id in [7u32, 8] {
            grp.extend_from_slice(&id.to_ne_bytes());
            grp.extend_from_slice(&[1, 0, 0, 0]);
        }
        d.extend(msg(
            RTM_NEWNEXTHOP,
            0,
            &[nla(NHA_ID, &9u32.to_ne_bytes()), nla(NHA_GROUP, &grp)],
        ));
        d.extend(msg(
            RTM_NEWNEXTHOP,
            0,
            &[nla(NHA_ID, &10u32.to_ne_bytes()), nla(NHA_BLACKHOLE, &[])],
        ));
        d.extend(msg(
            RTM_DELNEXTHOP,
            AF_INET,
            &[nla(NHA_ID, &7u32.to_ne_bytes())],
        ));
        let (ev, done) = parse_datagram(&d).expect("parse");
        assert!(!done);
        assert_eq!(
            ev,
            vec![
                KernelEvent::Nexthop(
                    7,
                    NhObject::Single(KNextHop {
                        gateway: Some("198.18.2.2".parse().expect("ip")),
                        ifindex: 3
                    })
                ),
                KernelEvent::Nexthop(9, NhObject::Group(vec![7, 8])),
                KernelEvent::Nexthop(10, NhObject::Blackhole),
                KernelEvent::NexthopGone(7),
            ]
        );
    }

    #[test]
    fn truncated_attributes_are_skipped_not_trusted() {
        let mut m = msg(RTM_NEWNEXTHOP, AF_INET, &[nla(NHA_ID, &7u32.to_ne_bytes())]);
        // Claim a longer attribute than the message holds.
        let n = m.len();
        m[n - 8] = 200;
        let (ev, _) = parse_datagram(&m).expect("parse");
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn dump_reply_error_is_reported() {
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&(-95i32).to_ne_bytes());
        assert!(parse_datagram(&m).is_err());
    }
}
