//! From connection-table snapshots to flow records: which connections are
//! due (active timeout, idle timeout, end of flow, gone from the table) and
//! what they did since their last record. Pure logic, no maps: the exporter
//! feeds it what it read.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dataplane_common::{
    CT_F_ORIG_IS_LO, CT_TCP_CLOSE, CT_TCP_TIME_WAIT, CtCounters, CtEntry, CtKey,
};

use super::ipfix::{CONSUMED, EndReason, FORWARDED, FlowRecord};

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;

/// The two clocks at one instant: entries are stamped with
/// CLOCK_MONOTONIC_COARSE, records carry Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub mono_ns: u64,
    pub unix_ms: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            mono_ns: crate::conntrack::now_ns(),
            unix_ms,
        }
    }

    /// The Unix milliseconds of monotonic instant `t`.
    fn unix_ms_of(&self, t: u64) -> u64 {
        self.unix_ms
            .saturating_sub(self.mono_ns.saturating_sub(t) / NS_PER_MS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A long flow gets a record at least this often.
    pub active_ns: u64,
    /// A flow without packets for this long gets its last record.
    pub idle_ns: u64,
}

struct Flow {
    entry: CtEntry,
    /// Latest counters read (summed over CPUs).
    counters: CtCounters,
    /// Counters at the last record.
    exported: CtCounters,
    /// When the last record was made (or the flow was first seen).
    last_export_ns: u64,
    /// When `counters` were read.
    read_ns: u64,
}

/// The flows the exporter knows, by connection key.
#[derive(Default)]
pub struct Tracker {
    flows: HashMap<CtKey, Flow>,
}

impl Tracker {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Whether `key`'s counters must be read again. Not if the flow's
    /// last-seen time is unchanged and they were read more than a second
    /// after it: the program refreshes last-seen for any packet a second or
    /// more after it, so no packet can have come since. This keeps a scan of
    /// a mostly idle table at one read per entry.
    pub fn needs_counters(&self, key: &CtKey, entry: &CtEntry) -> bool {
        match self.flows.get(key) {
            Some(f) => {
                f.entry.created_ns != entry.created_ns
                    || f.entry.last_seen_ns != entry.last_seen_ns
                    || f.read_ns <= entry.last_seen_ns + NS_PER_SEC + 100 * NS_PER_MS
            }
            None => true,
        }
    }

    /// One entry of a scan; `counters` as read (None: not read, unchanged).
    /// Appends the records due to `out`.
    pub fn observe(
        &mut self,
        key: &CtKey,
        entry: &CtEntry,
        counters: Option<CtCounters>,
        clock: &Clock,
        timeouts: &Timeouts,
        out: &mut Vec<FlowRecord>,
    ) {
        if let Some(f) = self.flows.get(key)
            && f.entry.created_ns != entry.created_ns
        {
            // The key was reused by a new connection (a SYN after close):
            // the old one ended with what we last read.
            if let Some(old) = self.flows.remove(key) {
                records(key, &old, clock, EndReason::EndOfFlow, out);
            }
        }
        let f = self.flows.entry(*key).or_insert_with(|| Flow {
            entry: *entry,
            counters: CtCounters::default(),
            exported: CtCounters::default(),
            last_export_ns: entry.created_ns,
            read_ns: 0,
        });
        f.entry = *entry;
        if let Some(c) = counters {
            f.counters = c;
            f.read_ns = clock.mono_ns;
        }
        if !has_delta(f) {
            return;
        }
        let now = clock.mono_ns;
        let reason = if matches!(entry.state, CT_TCP_CLOSE | CT_TCP_TIME_WAIT) {
            Some(EndReason::EndOfFlow)
        } else if now.saturating_sub(entry.last_seen_ns) >= timeouts.idle_ns {
            Some(EndReason::IdleTimeout)
        } else if now.saturating_sub(f.last_export_ns) >= timeouts.active_ns {
            Some(EndReason::ActiveTimeout)
        } else {
            None
        };
        if let Some(reason) = reason {
            records(key, f, clock, reason, out);
            f.exported = f.counters;
            f.last_export_ns = now;
        }
    }

    /// After a scan: the flows whose entries are gone (expired, evicted,
    /// flushed) get their last record and are forgotten.
    pub fn end_missing(&mut self, seen: &HashSet<CtKey>, clock: &Clock, out: &mut Vec<FlowRecord>) {
        let gone: Vec<CtKey> = self
            .flows
            .keys()
            .filter(|k| !seen.contains(*k))
            .copied()
            .collect();
        for k in gone {
            if let Some(f) = self.flows.remove(&k) {
                let reason = if matches!(f.entry.state, CT_TCP_CLOSE | CT_TCP_TIME_WAIT) {
                    EndReason::EndOfFlow
                } else {
                    EndReason::IdleTimeout
                };
                records(&k, &f, clock, reason, out);
            }
        }
    }

    /// Every flow's last record (the exporter stops).
    pub fn end_all(&mut self, clock: &Clock, out: &mut Vec<FlowRecord>) {
        for (k, f) in self.flows.drain() {
            records(&k, &f, clock, EndReason::ForcedEnd, out);
        }
    }
}

fn has_delta(f: &Flow) -> bool {
    (0..2).any(|d| f.counters.packets[d] > f.exported.packets[d])
}

fn addr(family: u8, a: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*a);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        (4, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(v6),
    }
}

/// One record per direction that carried packets since the last one.
fn records(key: &CtKey, f: &Flow, clock: &Clock, reason: EndReason, out: &mut Vec<FlowRecord>) {
    let lo = (addr(key.family, &key.addr_lo), key.port_lo);
    let hi = (addr(key.family, &key.addr_hi), key.port_hi);
    let (orig, resp) = if f.entry.flags & CT_F_ORIG_IS_LO != 0 {
        (lo, hi)
    } else {
        (hi, lo)
    };
    // ICMP echo keys use the identifier as both ports: not transport ports.
    let ports = !matches!(key.proto, 1 | 58);
    let status = if f.entry.ifindex_out == 0 {
        CONSUMED
    } else {
        FORWARDED
    };
    let start_ms = clock.unix_ms_of(f.last_export_ns.max(f.entry.created_ns));
    let end_ms = clock.unix_ms_of(f.entry.last_seen_ns).max(start_ms);
    for dir in 0..2 {
        let packets = f.counters.packets[dir].saturating_sub(f.exported.packets[dir]);
        if packets == 0 {
            continue;
        }
        let bytes = f.counters.bytes[dir].saturating_sub(f.exported.bytes[dir]);
        let ((src, sport), (dst, dport), ingress, egress) = if dir == 0 {
            (orig, resp, f.entry.ifindex_orig, f.entry.ifindex_out)
        } else {
            (resp, orig, f.entry.ifindex_out, f.entry.ifindex_orig)
        };
        out.push(FlowRecord {
            src,
            dst,
            sport: if ports { sport } else { 0 },
            dport: if ports { dport } else { 0 },
            proto: key.proto,
            ingress,
            egress,
            packets,
            bytes,
            start_ms,
            end_ms,
            tcp_flags: u16::from(f.counters.tcp_flags[dir]),
            end_reason: reason,
            forwarding_status: status,
            rule: f.entry.rule,
        });
    }
}

#[cfg(test)]
mod tests {
    use dataplane_common::{CT_TCP_ESTABLISHED, CT_UDP_REPLIED};

    use super::*;

    const S: u64 = NS_PER_SEC;
    const T: Timeouts = Timeouts {
        active_ns: 60 * S,
        idle_ns: 15 * S,
    };

    fn clock(mono_s: u64) -> Clock {
        Clock {
            mono_ns: mono_s * S,
            unix_ms: 1_796_533_200_000 + mono_s * 1000,
        }
    }

    /// 198.18.1.2:40000 (originator, the `hi` side) -> 198.18.2.2:80.
    fn key() -> CtKey {
        CtKey {
            addr_lo: Ipv4Addr::new(198, 18, 2, 2).to_ipv6_mapped().octets(),
            addr_hi: Ipv4Addr::new(198, 18, 1, 2).to_ipv6_mapped().octets(),
            port_lo: 80,
            port_hi: 40000,
            proto: 6,
            family: 4,
            _pad: [0; 2],
        }
    }

    fn entry(created: u64, last: u64, state: u8) -> CtEntry {
        CtEntry {
            state,
            flags: 0,
            ifindex_orig: 2,
            ifindex_out: 3,
            rule: 9,
            created_ns: created * S,
            last_seen_ns: last * S,
            ..Default::default()
        }
    }

    fn counts(p0: u64, p1: u64) -> CtCounters {
        CtCounters {
            packets: [p0, p1],
            bytes: [p0 * 100, p1 * 1000],
            tcp_flags: [0x12, 0x1a],
            _pad: [0; 6],
        }
    }

    #[test]
    fn an_idle_flow_gets_one_record_per_direction_then_none() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.observe(
            &key(),
            &entry(100, 101, CT_TCP_ESTABLISHED),
            Some(counts(5, 4)),
            &clock(102),
            &T,
            &mut out,
        );
        assert!(out.is_empty(), "not due yet");
        t.observe(
            &key(),
            &entry(100, 101, CT_TCP_ESTABLISHED),
            None,
            &clock(116),
            &T,
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        let (a, b) = (&out[0], &out[1]);
        assert_eq!((a.src.to_string(), a.sport), ("198.18.1.2".into(), 40000));
        assert_eq!((a.dst.to_string(), a.dport), ("198.18.2.2".into(), 80));
        assert_eq!((a.packets, a.bytes, a.ingress, a.egress), (5, 500, 2, 3));
        assert_eq!(
            (b.src.to_string(), b.packets, b.bytes),
            ("198.18.2.2".into(), 4, 4000)
        );
        assert_eq!((b.ingress, b.egress), (3, 2));
        assert_eq!(a.end_reason, EndReason::IdleTimeout);
        assert_eq!(
            (a.start_ms, a.end_ms),
            (1_796_533_300_000, 1_796_533_301_000)
        );
        assert_eq!(
            (a.rule, a.tcp_flags, a.forwarding_status),
            (9, 0x12, FORWARDED)
        );
        out.clear();
        t.observe(
            &key(),
            &entry(100, 101, CT_TCP_ESTABLISHED),
            None,
            &clock(130),
            &T,
            &mut out,
        );
        assert!(out.is_empty(), "nothing new: {out:?}");
    }

    #[test]
    fn a_busy_flow_gets_deltas_at_the_active_timeout() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.observe(
            &key(),
            &entry(0, 59, CT_TCP_ESTABLISHED),
            Some(counts(10, 0)),
            &clock(59),
            &T,
            &mut out,
        );
        assert!(out.is_empty());
        t.observe(
            &key(),
            &entry(0, 60, CT_TCP_ESTABLISHED),
            Some(counts(12, 0)),
            &clock(60),
            &T,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].packets, out[0].end_reason),
            (12, EndReason::ActiveTimeout)
        );
        out.clear();
        t.observe(
            &key(),
            &entry(0, 120, CT_TCP_ESTABLISHED),
            Some(counts(20, 0)),
            &clock(120),
            &T,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].packets, 8, "a delta, not the total");
        assert_eq!(out[0].bytes, 800);
    }

    #[test]
    fn a_closed_or_vanished_or_reused_flow_ends() {
        let mut out = Vec::new();
        let mut t = Tracker::default();
        t.observe(
            &key(),
            &entry(0, 1, CT_TCP_CLOSE),
            Some(counts(3, 3)),
            &clock(2),
            &T,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.end_reason == EndReason::EndOfFlow));

        out.clear();
        let mut t = Tracker::default();
        t.observe(
            &key(),
            &entry(0, 1, CT_UDP_REPLIED),
            Some(counts(1, 0)),
            &clock(2),
            &T,
            &mut out,
        );
        t.end_missing(&HashSet::new(), &clock(3), &mut out);
        assert_eq!(out.len(), 1);
        assert!(t.is_empty());

        out.clear();
        let mut t = Tracker::default();
        t.observe(
            &key(),
            &entry(0, 1, CT_TCP_ESTABLISHED),
            Some(counts(2, 2)),
            &clock(2),
            &T,
            &mut out,
        );
        t.observe(
            &key(),
            &entry(5, 5, CT_TCP_ESTABLISHED),
            Some(counts(1, 0)),
            &clock(6),
            &T,
            &mut out,
        );
        assert_eq!(out.len(), 2, "the old connection's two directions");
        assert_eq!(out[0].packets, 2);
        assert_eq!(t.len(), 1);
        out.clear();
        t.end_all(&clock(7), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].packets, out[0].end_reason),
            (1, EndReason::ForcedEnd)
        );
    }

    #[test]
    fn counters_are_reread_only_while_they_can_change() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let e = entry(0, 10, CT_TCP_ESTABLISHED);
        assert!(t.needs_counters(&key(), &e), "new flow");
        t.observe(&key(), &e, Some(counts(1, 1)), &clock(10), &T, &mut out);
        assert!(
            t.needs_counters(&key(), &e),
            "read within a second of last-seen"
        );
        t.observe(&key(), &e, Some(counts(2, 1)), &clock(12), &T, &mut out);
        assert!(!t.needs_counters(&key(), &e), "idle since: cannot change");
        assert!(t.needs_counters(&key(), &entry(0, 13, CT_TCP_ESTABLISHED)));
    }

    #[test]
    fn icmp_records_carry_no_ports_and_input_is_consumed() {
        let mut k = key();
        k.proto = 1;
        let mut e = entry(0, 1, dataplane_common::CT_ICMP);
        e.ifindex_out = 0;
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.observe(&k, &e, Some(counts(1, 1)), &clock(30), &T, &mut out);
        assert_eq!(out.len(), 2);
        assert!(
            out.iter()
                .all(|r| r.sport == 0 && r.dport == 0 && r.forwarding_status == CONSUMED)
        );
    }
}
