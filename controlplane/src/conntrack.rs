//! The connection table as people read it: decoding `CONNTRACK` entries
//! into connections (original direction, state name, ages), listing them
//! with filters and a stable cursor, flushing, and sweeping out entries
//! that outlived their state's timeout.
//!
//! The program treats an entry idle beyond its timeout as gone (and
//! overwrites it on the next packet), but an LRU map only evicts when full,
//! so dead entries would sit in listings and counts; the sweeper deletes
//! them, like nf_conntrack's gc worker (net/netfilter/nf_conntrack_core.c
//! gc_worker).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::MapError;
use dataplane_common::{
    CT_DEFAULT_TIMEOUTS, CT_F_ORIG_IS_LO, CT_F_SEEN_REPLY, CT_STATE_NAMES, CT_TIMEOUTS, CtEntry,
    CtKey,
};
use ipnet::IpNet;
use serde::Serialize;

use crate::dataplane::{Dataplane, DataplaneError, FirewallMaps};

const NS_PER_SEC: u64 = 1_000_000_000;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Names of the timeouts of `xdpgate run --ct-timeout NAME=SECONDS`, by
/// `CT_*` state (nf_conntrack's sysctl names, shortened).
pub const CT_TIMEOUT_NAMES: [&str; CT_TIMEOUTS] = [
    "syn_sent",
    "syn_recv",
    "established",
    "fin_wait",
    "close_wait",
    "last_ack",
    "time_wait",
    "close",
    "udp",
    "udp_stream",
    "icmp",
    "other",
    "other_stream",
];

/// One `--ct-timeout NAME=SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtTimeout {
    /// Index into `Config::ct_timeouts` (a `CT_*` state).
    pub state: usize,
    pub seconds: u32,
}

impl std::str::FromStr for CtTimeout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=SECONDS (e.g. established=3600)"))?;
        let name = name.trim();
        let state = CT_TIMEOUT_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "unknown connection state {name:?}; one of: {}",
                    CT_TIMEOUT_NAMES.join(", ")
                )
            })?;
        let seconds: u32 = value.trim().parse().map_err(|_| {
            format!(
                "{name}: {value:?} is not a number of seconds (1..={})",
                u32::MAX
            )
        })?;
        if seconds == 0 {
            return Err(format!(
                "{name}: a timeout of 0 s would expire every connection at once"
            ));
        }
        Ok(CtTimeout { state, seconds })
    }
}

/// The default timeouts with `overrides` applied (later ones win).
pub fn timeouts_with(overrides: &[CtTimeout]) -> [u32; CT_TIMEOUTS] {
    let mut t = CT_DEFAULT_TIMEOUTS;
    for o in overrides {
        t[o.state] = o.seconds;
    }
    t
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the clock of
/// `bpf_ktime_get_coarse_ns` (kernel/bpf/helpers.c: ktime_get_coarse_ns),
/// which stamps the entries.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC_COARSE) cannot fail");
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}

/// A tracked connection, in its original direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Connection {
    /// 4 or 6.
    pub family: u8,
    /// "tcp", "udp", "icmp", "icmpv6", or the protocol number.
    pub proto: String,
    #[schema(value_type = String)]
    pub src: IpAddr,
    /// Source port; for ICMP echo, the identifier.
    pub sport: u16,
    #[schema(value_type = String)]
    pub dst: IpAddr,
    pub dport: u16,
    /// As `conntrack -L` prints it (ESTABLISHED, UNREPLIED, ECHO...).
    pub state: &'static str,
    pub seen_reply: bool,
    pub age_s: u64,
    pub idle_s: u64,
    /// Seconds until the state's timeout forgets it (0: already expired).
    pub expires_in_s: u64,
    /// Where the first packet came in and went out (0: the box itself).
    pub ifindex_orig: u32,
    pub ifindex_out: u32,
    /// Database id of the rule that accepted the first packet (0: policy).
    pub rule: u32,
}

pub fn proto_name(proto: u8) -> String {
    match proto {
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn parse_proto(s: &str) -> Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "icmp" => Ok(IPPROTO_ICMP),
        "tcp" => Ok(IPPROTO_TCP),
        "udp" => Ok(IPPROTO_UDP),
        "icmpv6" | "ipv6-icmp" => Ok(IPPROTO_ICMPV6),
        other => other
            .parse()
            .map_err(|_| format!("proto {s:?}: expected tcp, udp, icmp, icmpv6 or 0..=255")),
    }
}

fn addr(family: u8, a: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        (4, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(v6),
    }
}

/// Seconds of `timeout` left after `idle_ns` of silence.
fn expires_in(timeout_s: u32, idle_ns: u64) -> u64 {
    (u64::from(timeout_s) * NS_PER_SEC).saturating_sub(idle_ns) / NS_PER_SEC
}

/// Whether the program would treat `e` as gone at `now`: the same test as
/// dataplane-ebpf's `conntrack::expired`.
pub fn is_expired(e: &CtEntry, timeouts: &[u32; CT_TIMEOUTS], now: u64) -> bool {
    let Some(&t) = timeouts.get(usize::from(e.state)) else {
        return true;
    };
    now > e.last_seen_ns.saturating_add(u64::from(t) * NS_PER_SEC)
}

/// Decode one entry as seen at `now`.
pub fn decode(k: &CtKey, e: &CtEntry, timeouts: &[u32; CT_TIMEOUTS], now: u64) -> Connection {
    let lo = (addr(k.family, k.addr_lo), k.port_lo);
    let hi = (addr(k.family, k.addr_hi), k.port_hi);
    let ((src, sport), (dst, dport)) = if e.flags & CT_F_ORIG_IS_LO != 0 {
        (lo, hi)
    } else {
        (hi, lo)
    };
    let idle_ns = now.saturating_sub(e.last_seen_ns);
    let state = usize::from(e.state);
    Connection {
        family: k.family,
        proto: proto_name(k.proto),
        src,
        sport,
        dst,
        dport,
        state: CT_STATE_NAMES.get(state).copied().unwrap_or("UNKNOWN"),
        seen_reply: e.flags & CT_F_SEEN_REPLY != 0,
        age_s: now.saturating_sub(e.created_ns) / NS_PER_SEC,
        idle_s: idle_ns / NS_PER_SEC,
        expires_in_s: timeouts.get(state).map_or(0, |&t| expires_in(t, idle_ns)),
        ifindex_orig: e.ifindex_orig,
        ifindex_out: e.ifindex_out,
        rule: e.rule,
    }
}

/// The key as a cursor: its fields big-endian in hex, so the string order
/// is the key order and a cursor stays valid while entries come and go.
pub fn key_hex(k: &CtKey) -> String {
    let mut bytes = Vec::with_capacity(38);
    bytes.extend_from_slice(&k.addr_lo);
    bytes.extend_from_slice(&k.addr_hi);
    bytes.extend_from_slice(&k.port_lo.to_be_bytes());
    bytes.extend_from_slice(&k.port_hi.to_be_bytes());
    bytes.push(k.proto);
    bytes.push(k.family);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which connections a list or flush covers; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The original source is inside this prefix.
    pub src: Option<IpNet>,
    /// The original destination is inside this prefix.
    pub dst: Option<IpNet>,
    pub proto: Option<u8>,
    /// Either port (TCP, UDP and other protocols with ports; never ICMP).
    pub port: Option<u16>,
    /// A state name of [`CT_STATE_NAMES`], any case.
    pub state: Option<String>,
}

/// A prefix, or an address meaning just that host.
fn parse_net(what: &str, s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{what} {s:?} is not an address or prefix"))
}

impl Filter {
    /// A filter from the text of query parameters or flags.
    pub fn parse(
        src: Option<&str>,
        dst: Option<&str>,
        proto: Option<&str>,
        port: Option<u16>,
        state: Option<&str>,
    ) -> Result<Filter, String> {
        let state = state
            .map(|s| {
                CT_STATE_NAMES
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(s))
                    .map(|n| (*n).to_owned())
                    .ok_or_else(|| {
                        let mut names = CT_STATE_NAMES.to_vec();
                        names.dedup();
                        format!("state {s:?}: one of {}", names.join(", "))
                    })
            })
            .transpose()?;
        Ok(Filter {
            src: src.map(|s| parse_net("src", s)).transpose()?,
            dst: dst.map(|s| parse_net("dst", s)).transpose()?,
            proto: proto.map(parse_proto).transpose()?,
            port,
            state,
        })
    }

    pub fn matches(&self, c: &Connection) -> bool {
        let has_ports = !matches!(c.proto.as_str(), "icmp" | "icmpv6");
        self.src.is_none_or(|n| n.contains(&c.src))
            && self.dst.is_none_or(|n| n.contains(&c.dst))
            && self.proto.is_none_or(|p| proto_name(p) == c.proto)
            && self
                .port
                .is_none_or(|p| has_ports && (c.sport == p || c.dport == p))
            && self.state.as_deref().is_none_or(|s| s == c.state)
    }
}

/// One page of [`list`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConntrackPage)]
pub struct Page {
    pub items: Vec<Connection>,
    /// Give this as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
    /// Live connections matching the filter, over all pages.
    pub total: usize,
    /// Capacity of the table.
    pub capacity: u32,
}

fn map_err(source: MapError) -> DataplaneError {
    DataplaneError::Map {
        map: "CONNTRACK",
        source,
    }
}

/// Every entry of the table; entries deleted while we walk are skipped.
fn entries(fw: &FirewallMaps) -> Result<Vec<(CtKey, CtEntry)>, DataplaneError> {
    let mut out = Vec::new();
    for r in fw.conntrack().iter() {
        match r {
            Ok(kv) => out.push(kv),
            Err(MapError::KeyNotFound) => {}
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(map_err(e)),
        }
    }
    Ok(out)
}

fn timeouts(fw: &FirewallMaps) -> Result<[u32; CT_TIMEOUTS], DataplaneError> {
    Ok(fw.config()?.ct_timeouts)
}

/// The live connections matching `filter`, ordered by key, `limit` of them
/// after `cursor` (a key from a previous page's `next_cursor`).
pub fn list(
    fw: &FirewallMaps,
    filter: &Filter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page, DataplaneError> {
    let now = now_ns();
    let timeouts = timeouts(fw)?;
    let mut all: Vec<(String, Connection)> = entries(fw)?
        .into_iter()
        .filter(|(_, e)| !is_expired(e, &timeouts, now))
        .map(|(k, e)| (key_hex(&k), decode(&k, &e, &timeouts, now)))
        .filter(|(_, c)| filter.matches(c))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(page(all, limit, cursor, fw.conntrack_capacity()))
}

fn page(all: Vec<(String, Connection)>, limit: usize, cursor: Option<&str>, capacity: u32) -> Page {
    let total = all.len();
    let start = cursor.map_or(0, |c| all.partition_point(|(k, _)| k.as_str() <= c));
    let end = (start + limit).min(total);
    let next_cursor = (end < total && end > start).then(|| all[end - 1].0.clone());
    Page {
        items: all
            .into_iter()
            .skip(start)
            .take(end - start)
            .map(|(_, c)| c)
            .collect(),
        next_cursor,
        total,
        capacity,
    }
}

/// Delete the connections matching `filter` (expired ones too); returns how
/// many were deleted. The next packet of a flushed connection is `new`.
pub fn flush(fw: &mut FirewallMaps, filter: &Filter) -> Result<usize, DataplaneError> {
    let now = now_ns();
    let timeouts = timeouts(fw)?;
    let doomed: Vec<CtKey> = entries(fw)?
        .into_iter()
        .filter(|(k, e)| filter.matches(&decode(k, e, &timeouts, now)))
        .map(|(k, _)| k)
        .collect();
    let mut deleted = 0;
    for k in &doomed {
        deleted += remove(fw, k)? as usize;
    }
    Ok(deleted)
}

/// Delete `k`; false if it was already gone.
fn remove(fw: &mut FirewallMaps, k: &CtKey) -> Result<bool, DataplaneError> {
    match fw.conntrack_mut().remove(k) {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(map_err(e)),
    }
}

/// Delete the entries idle beyond their state's timeout at `now`
/// ([`now_ns`]); returns how many. Each is read again right before its
/// delete, so one a packet has just revived survives.
pub fn sweep(fw: &mut FirewallMaps, now: u64) -> Result<usize, DataplaneError> {
    let timeouts = timeouts(fw)?;
    let stale: Vec<CtKey> = entries(fw)?
        .into_iter()
        .filter(|(_, e)| is_expired(e, &timeouts, now))
        .map(|(k, _)| k)
        .collect();
    let mut deleted = 0;
    for k in &stale {
        match fw.conntrack().get(k, 0) {
            Ok(e) if is_expired(&e, &timeouts, now) => deleted += remove(fw, k)? as usize,
            _ => {}
        }
    }
    Ok(deleted)
}

/// Sweep every `interval` until the dataplane lock is poisoned. Each sweep
/// runs on a blocking thread (a full table is a few hundred thousand
/// syscalls) and holds the lock only there, never across an await.
pub async fn sweeper(dataplane: Arc<Mutex<Dataplane>>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let dp = dataplane.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let mut dp = dp.lock().map_err(|_| None)?;
            sweep(dp.firewall_mut(), now_ns()).map_err(Some)
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(expired = n, "conntrack sweep"),
            Ok(Err(Some(e))) => tracing::warn!("conntrack sweep: {e}"),
            Ok(Err(None)) => {
                tracing::error!("conntrack sweeper stops: the dataplane lock is poisoned");
                return;
            }
            Err(e) => tracing::error!("conntrack sweep panicked: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use dataplane_common::{CT_ICMP, CT_TCP_ESTABLISHED, CT_TCP_SYN_SENT, CT_UDP_UNREPLIED};

    use super::*;

    fn mapped(a: Ipv4Addr) -> [u8; 16] {
        a.to_ipv6_mapped().octets()
    }

    const S: u64 = NS_PER_SEC;

    /// 198.18.1.2:40000 -> 198.18.2.2:80 as the program keys it: the
    /// client is the higher side, so the originator is `hi`.
    fn tcp() -> (CtKey, CtEntry) {
        let k = CtKey {
            addr_lo: mapped(Ipv4Addr::new(198, 18, 1, 2)),
            addr_hi: mapped(Ipv4Addr::new(198, 18, 2, 2)),
            port_lo: 40000,
            port_hi: 80,
            proto: IPPROTO_TCP,
            family: 4,
            _pad: [0; 2],
        };
        // Swap so the client (198.18.2.2:80 is the server) is `hi`.
        let k = CtKey {
            addr_lo: k.addr_hi,
            addr_hi: k.addr_lo,
            port_lo: 80,
            port_hi: 40000,
            ..k
        };
        let e = CtEntry {
            state: CT_TCP_ESTABLISHED,
            flags: CT_F_SEEN_REPLY,
            ifindex_orig: 2,
            ifindex_out: 3,
            rule: 7,
            created_ns: 100 * S,
            last_seen_ns: 150 * S,
            ..Default::default()
        };
        (k, e)
    }

    #[test]
    fn decodes_the_original_direction_and_times() {
        let (k, e) = tcp();
        let c = decode(&k, &e, &CT_DEFAULT_TIMEOUTS, 160 * S + S / 2);
        assert_eq!(c.src, "198.18.1.2".parse::<IpAddr>().unwrap());
        assert_eq!((c.sport, c.dport), (40000, 80));
        assert_eq!(c.dst, "198.18.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (c.family, c.proto.as_str(), c.state),
            (4, "tcp", "ESTABLISHED")
        );
        assert!(c.seen_reply);
        assert_eq!((c.age_s, c.idle_s), (60, 10));
        // 432000 s minus 10.5 s idle, rounded down.
        assert_eq!(c.expires_in_s, 432_000 - 11);
        assert_eq!((c.ifindex_orig, c.ifindex_out, c.rule), (2, 3, 7));

        // The same key with the originator on the low side reads the other way.
        let c = decode(
            &k,
            &CtEntry {
                flags: CT_F_ORIG_IS_LO,
                ..e
            },
            &CT_DEFAULT_TIMEOUTS,
            150 * S,
        );
        assert_eq!((c.src.to_string().as_str(), c.sport), ("198.18.2.2", 80));
        assert!(!c.seen_reply);
    }

    #[test]
    fn decodes_ipv6_icmp_and_unknown_states() {
        let a: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
        let k = CtKey {
            addr_lo: a.octets(),
            addr_hi: b.octets(),
            port_lo: 9,
            port_hi: 9,
            proto: IPPROTO_ICMPV6,
            family: 6,
            _pad: [0; 2],
        };
        let e = CtEntry {
            state: CT_ICMP,
            flags: CT_F_ORIG_IS_LO,
            last_seen_ns: 10 * S,
            ..Default::default()
        };
        let c = decode(&k, &e, &CT_DEFAULT_TIMEOUTS, 50 * S);
        assert_eq!((c.src, c.dst), (IpAddr::V6(a), IpAddr::V6(b)));
        assert_eq!((c.proto.as_str(), c.state), ("icmpv6", "ECHO"));
        // Idle 40 s beyond ICMP's 30 s.
        assert_eq!(c.expires_in_s, 0);
        let bad = decode(
            &k,
            &CtEntry { state: 200, ..e },
            &CT_DEFAULT_TIMEOUTS,
            50 * S,
        );
        assert_eq!((bad.state, bad.expires_in_s), ("UNKNOWN", 0));
    }

    #[test]
    fn expiry_is_the_programs_test() {
        let (_, e) = tcp();
        let mut t = CT_DEFAULT_TIMEOUTS;
        t[usize::from(CT_TCP_ESTABLISHED)] = 60;
        // last seen 150 s: alive through 210 s exactly, gone after.
        assert!(!is_expired(&e, &t, 210 * S));
        assert!(is_expired(&e, &t, 210 * S + 1));
        let syn = CtEntry {
            state: CT_TCP_SYN_SENT,
            ..e
        };
        assert!(!is_expired(&syn, &t, 269 * S));
        assert!(is_expired(&syn, &t, 271 * S));
        assert!(is_expired(&CtEntry { state: 13, ..e }, &t, 150 * S));
        // A clock before last-seen (a stamp racing the read) is not expiry.
        assert!(!is_expired(&e, &t, 0));
    }

    fn conn(
        proto: &str,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        state: &'static str,
    ) -> Connection {
        Connection {
            family: 4,
            proto: proto.into(),
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
            state,
            seen_reply: false,
            age_s: 0,
            idle_s: 0,
            expires_in_s: 0,
            ifindex_orig: 0,
            ifindex_out: 0,
            rule: 0,
        }
    }

    #[test]
    fn filters_match_every_given_field() {
        let web = conn("tcp", "198.18.1.2", 40000, "198.18.2.2", 80, "ESTABLISHED");
        let ping = conn("icmp", "198.18.1.2", 80, "198.18.2.2", 80, "ECHO");
        let f = |src, dst, proto, port, state| Filter::parse(src, dst, proto, port, state).unwrap();
        assert!(f(None, None, None, None, None).matches(&web));
        assert!(f(Some("198.18.1.0/24"), Some("198.18.2.2"), None, None, None).matches(&web));
        assert!(!f(Some("198.18.2.0/24"), None, None, None, None).matches(&web));
        assert!(!f(Some("::/0"), None, None, None, None).matches(&web));
        assert!(f(None, None, Some("TCP"), Some(80), Some("established")).matches(&web));
        assert!(f(None, None, None, Some(40000), None).matches(&web));
        assert!(!f(None, None, Some("udp"), None, None).matches(&web));
        assert!(f(None, None, Some("6"), None, None).matches(&web));
        // An echo identifier is not a port.
        assert!(!f(None, None, None, Some(80), None).matches(&ping));
        assert!(f(None, None, Some("icmp"), None, Some("echo")).matches(&ping));
        assert!(!f(None, None, None, None, Some("SYN_SENT")).matches(&web));

        for (src, proto, state) in [
            (Some("nope"), None, None),
            (None, Some("sctpx"), None),
            (None, None, Some("open")),
        ] {
            assert!(Filter::parse(src, None, proto, None, state).is_err());
        }
    }

    #[test]
    fn pages_follow_the_key_order_from_the_cursor() {
        let c = conn("udp", "10.0.0.1", 1, "10.0.0.2", 2, "UNREPLIED");
        let all: Vec<(String, Connection)> = ["01", "02", "03", "04", "05"]
            .iter()
            .map(|k| (k.to_string(), c.clone()))
            .collect();
        let p = page(all.clone(), 2, None, 9);
        assert_eq!(
            (p.items.len(), p.total, p.next_cursor.as_deref()),
            (2, 5, Some("02"))
        );
        let p = page(all.clone(), 2, Some("02"), 9);
        assert_eq!(p.next_cursor.as_deref(), Some("04"));
        // The cursor's own entry went away: the next page starts after it.
        let p = page(
            all[..1].iter().chain(&all[3..]).cloned().collect(),
            2,
            Some("02"),
            9,
        );
        assert_eq!((p.items.len(), p.next_cursor), (2, None));
        let p = page(all, 2, Some("04"), 9);
        assert_eq!((p.items.len(), p.next_cursor, p.capacity), (1, None, 9));
    }

    #[test]
    fn key_hex_orders_like_the_key() {
        let (k, _) = tcp();
        let h = key_hex(&k);
        assert_eq!(h.len(), 76);
        let higher_port = CtKey { port_lo: 81, ..k };
        assert!(key_hex(&higher_port) > h);
        assert!(h.starts_with("00000000000000000000ffffc6120202"), "{h}");
    }

    #[test]
    fn ct_timeout_flags_parse_with_clear_errors() {
        let t: CtTimeout = "established=3600".parse().unwrap();
        assert_eq!(
            t,
            CtTimeout {
                state: usize::from(CT_TCP_ESTABLISHED),
                seconds: 3600
            }
        );
        let u: CtTimeout = "UDP = 60".parse().unwrap();
        assert_eq!(u.state, usize::from(CT_UDP_UNREPLIED));
        let all = timeouts_with(&[t, u, "udp=90".parse().unwrap()]);
        assert_eq!(all[usize::from(CT_TCP_ESTABLISHED)], 3600);
        assert_eq!(all[usize::from(CT_UDP_UNREPLIED)], 90);
        assert_eq!(
            all[usize::from(CT_ICMP)],
            CT_DEFAULT_TIMEOUTS[usize::from(CT_ICMP)]
        );
        for name in CT_TIMEOUT_NAMES {
            assert!(format!("{name}=1").parse::<CtTimeout>().is_ok(), "{name}");
        }
        let err = |s: &str| s.parse::<CtTimeout>().unwrap_err();
        assert!(err("established").contains("NAME=SECONDS"));
        assert!(err("estab=5").contains("unknown connection state \"estab\""));
        assert!(err("udp=-1").contains("not a number of seconds"));
        assert!(err("udp=5000000000").contains("not a number"));
        assert!(err("udp=0").contains("0 s"));
    }
}
