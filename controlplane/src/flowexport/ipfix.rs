//! IPFIX messages (RFC 7011) for xdpgate's flow records: one template for
//! IPv4 flows and one for IPv6 flows, information elements from the IANA
//! registry (RFC 5102 / RFC 7012), and one enterprise element for the
//! firewall rule id.
//!
//! Layout (RFC 7011 §3): a 16-byte message header, then sets; a set is a
//! 4-byte header (set id, length) and records. Set id 2 carries templates
//! (§3.4.1), ids >= 256 data records of that template.
use std::net::IpAddr;

/// RFC 7011 §3.1: version 10.
pub const VERSION: u16 = 10;
const TEMPLATE_SET_ID: u16 = 2;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// Message header (§3.1) and set header (§3.3.2) sizes.
const MESSAGE_HEADER: usize = 16;
const SET_HEADER: usize = 4;

/// IANA private enterprise number the rule-id element is scoped to. 32473
/// is the number RFC 5612 reserves for documentation and examples: an
/// operator's collector sees it as an unknown enterprise field until
/// xdpgate has a PEN of its own.
pub const ENTERPRISE: u32 = 32473;
/// xdpgate's enterprise element 1: the firewall rule id (unsigned32).
pub const IE_RULE_ID: u16 = 1;

/// IANA information element ids used in the templates.
mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const INGRESS_INTERFACE: u16 = 10;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const EGRESS_INTERFACE: u16 = 14;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const FORWARDING_STATUS: u16 = 89;
    pub const FLOW_END_REASON: u16 = 136;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    pub const FIREWALL_EVENT: u16 = 233;
}

/// firewallEvent values (IANA IPFIX registry, element 233). A record is
/// made from a connection the firewall accepted: "deleted" when it ends,
/// "update" at an active timeout while it goes on. Denied packets make no
/// connection entry; they are in the event log (`firewall_drop`).
pub const FLOW_DELETED: u8 = 2;
pub const FLOW_UPDATE: u8 = 5;

/// The firewall event of a record that ends for `reason`.
pub fn firewall_event(reason: EndReason) -> u8 {
    match reason {
        EndReason::ActiveTimeout => FLOW_UPDATE,
        _ => FLOW_DELETED,
    }
}

/// flowEndReason values (IANA registry, RFC 5102 §5.11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    IdleTimeout = 1,
    ActiveTimeout = 2,
    EndOfFlow = 3,
    ForcedEnd = 4,
}

/// forwardingStatus (RFC 7270 §4.12): status in the top two bits.
pub const FORWARDED: u32 = 0x40;
/// "Consumed" (addressed to the box itself: the input chain).
pub const CONSUMED: u32 = 0xC0;

/// One direction of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub ingress: u32,
    pub egress: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Unix milliseconds.
    pub start_ms: u64,
    pub end_ms: u64,
    pub tcp_flags: u16,
    pub end_reason: EndReason,
    pub forwarding_status: u32,
    pub rule: u32,
}

/// (element id, length) of every field after the two addresses, in
/// record order. The last one is xdpgate's enterprise element
/// ([`IE_RULE_ID`]): its id collides with IANA's octetDeltaCount (1), so it
/// is told apart by position, not by id.
const COMMON_FIELDS: [(u16, u16); 14] = [
    (ie::SOURCE_TRANSPORT_PORT, 2),
    (ie::DESTINATION_TRANSPORT_PORT, 2),
    (ie::PROTOCOL_IDENTIFIER, 1),
    (ie::INGRESS_INTERFACE, 4),
    (ie::EGRESS_INTERFACE, 4),
    (ie::PACKET_DELTA_COUNT, 8),
    (ie::OCTET_DELTA_COUNT, 8),
    (ie::FLOW_START_MILLISECONDS, 8),
    (ie::FLOW_END_MILLISECONDS, 8),
    (ie::TCP_CONTROL_BITS, 2),
    (ie::FLOW_END_REASON, 1),
    (ie::FIREWALL_EVENT, 1),
    (ie::FORWARDING_STATUS, 4),
    (IE_RULE_ID, 4),
];

/// Bytes of one data record of each template.
pub fn record_len(v6: bool) -> usize {
    let addrs = if v6 { 32 } else { 8 };
    addrs
        + COMMON_FIELDS
            .iter()
            .map(|&(_, l)| l as usize)
            .sum::<usize>()
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// A template set holding both templates (§3.4.1).
pub fn template_set() -> Vec<u8> {
    let mut b = Vec::new();
    put16(&mut b, TEMPLATE_SET_ID);
    put16(&mut b, 0); // length, below
    for (id, src, dst, alen) in [
        (
            TEMPLATE_V4,
            ie::SOURCE_IPV4_ADDRESS,
            ie::DESTINATION_IPV4_ADDRESS,
            4,
        ),
        (
            TEMPLATE_V6,
            ie::SOURCE_IPV6_ADDRESS,
            ie::DESTINATION_IPV6_ADDRESS,
            16,
        ),
    ] {
        put16(&mut b, id);
        put16(&mut b, 2 + COMMON_FIELDS.len() as u16);
        put16(&mut b, src);
        put16(&mut b, alen);
        put16(&mut b, dst);
        put16(&mut b, alen);
        for (i, &(ie, len)) in COMMON_FIELDS.iter().enumerate() {
            if i == COMMON_FIELDS.len() - 1 {
                // §3.2: the enterprise bit, then the PEN after the length.
                put16(&mut b, 0x8000 | ie);
                put16(&mut b, len);
                put32(&mut b, ENTERPRISE);
            } else {
                put16(&mut b, ie);
                put16(&mut b, len);
            }
        }
    }
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

fn put_record(b: &mut Vec<u8>, r: &FlowRecord) {
    match (r.src, r.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
        }
        (s, d) => {
            b.extend_from_slice(&to_v6(s));
            b.extend_from_slice(&to_v6(d));
        }
    }
    put16(b, r.sport);
    put16(b, r.dport);
    b.push(r.proto);
    put32(b, r.ingress);
    put32(b, r.egress);
    put64(b, r.packets);
    put64(b, r.bytes);
    put64(b, r.start_ms);
    put64(b, r.end_ms);
    put16(b, r.tcp_flags);
    b.push(r.end_reason as u8);
    b.push(firewall_event(r.end_reason));
    put32(b, r.forwarding_status);
    put32(b, r.rule);
}

fn to_v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Builds messages for one transport session and observation domain: keeps
/// the sequence number (§3.1: data records sent before this message, mod
/// 2^32) and cuts messages at `mtu` bytes so none is fragmented (§10.3.3).
pub struct Encoder {
    domain: u32,
    mtu: usize,
    sequence: u32,
}

impl Encoder {
    pub fn new(domain: u32, mtu: usize) -> Self {
        // At least a header, the template set, and one record.
        let floor = MESSAGE_HEADER + template_set().len() + SET_HEADER + record_len(true);
        Self {
            domain,
            mtu: mtu.max(floor),
            sequence: 0,
        }
    }

    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    fn header(&self, b: &mut Vec<u8>, export_secs: u32) {
        put16(b, VERSION);
        put16(b, 0); // length, at the end
        put32(b, export_secs);
        put32(b, self.sequence);
        put32(b, self.domain);
    }

    /// Messages carrying `records` (templates first when `with_templates`),
    /// in as few messages of at most `mtu` bytes as fit. Returns each
    /// message with its record count; the sequence number advances by the
    /// records encoded.
    pub fn encode(
        &mut self,
        export_secs: u32,
        with_templates: bool,
        records: &[FlowRecord],
    ) -> Vec<(Vec<u8>, u32)> {
        let mut out = Vec::new();
        let mut msg = Vec::with_capacity(self.mtu);
        let mut set_start: Option<(usize, u16)> = None;
        let mut in_msg = 0u32;
        self.header(&mut msg, export_secs);
        if with_templates {
            msg.extend_from_slice(&template_set());
        }
        for r in records {
            let v6 = !(r.src.is_ipv4() && r.dst.is_ipv4());
            let tid = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
            let need = record_len(v6)
                + if set_start.map(|(_, t)| t) == Some(tid) {
                    0
                } else {
                    SET_HEADER
                };
            if msg.len() + need > self.mtu && in_msg > 0 {
                close_set(&mut msg, set_start.take());
                self.finish(&mut msg, in_msg);
                out.push((std::mem::take(&mut msg), in_msg));
                msg.reserve(self.mtu);
                in_msg = 0;
                self.header(&mut msg, export_secs);
            }
            if set_start.map(|(_, t)| t) != Some(tid) {
                close_set(&mut msg, set_start.take());
                set_start = Some((msg.len(), tid));
                put16(&mut msg, tid);
                put16(&mut msg, 0);
            }
            put_record(&mut msg, r);
            in_msg += 1;
        }
        close_set(&mut msg, set_start.take());
        if in_msg > 0 || with_templates {
            self.finish(&mut msg, in_msg);
            out.push((msg, in_msg));
        }
        out
    }

    /// Fill the message length; the next message's sequence number counts
    /// this one's records.
    fn finish(&mut self, msg: &mut [u8], records: u32) {
        let len = msg.len() as u16;
        msg[2..4].copy_from_slice(&len.to_be_bytes());
        self.sequence = self.sequence.wrapping_add(records);
    }
}

fn close_set(msg: &mut [u8], set: Option<(usize, u16)>) {
    if let Some((start, _)) = set {
        let len = (msg.len() - start) as u16;
        msg[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(src: &str, dst: &str) -> FlowRecord {
        FlowRecord {
            src: src.parse().expect("addr"),
            dst: dst.parse().expect("addr"),
            sport: 40000,
            dport: 80,
            proto: 6,
            ingress: 2,
            egress: 3,
            packets: 10,
            bytes: 1500,
            start_ms: 1_796_533_200_000,
            end_ms: 1_796_533_201_000,
            tcp_flags: 0x1b,
            end_reason: EndReason::EndOfFlow,
            forwarding_status: FORWARDED,
            rule: 7,
        }
    }

    fn u16at(b: &[u8], i: usize) -> u16 {
        u16::from_be_bytes([b[i], b[i + 1]])
    }
    fn u32at(b: &[u8], i: usize) -> u32 {
        u32::from_be_bytes(b[i..i + 4].try_into().expect("4"))
    }

    #[test]
    fn template_set_bytes() {
        let t = template_set();
        assert_eq!(u16at(&t, 0), 2);
        assert_eq!(u16at(&t, 2) as usize, t.len());
        // First template: id 256, 16 fields, sourceIPv4Address/4 first.
        assert_eq!(u16at(&t, 4), 256);
        assert_eq!(u16at(&t, 6), 16);
        assert_eq!((u16at(&t, 8), u16at(&t, 10)), (8, 4));
        // Its last field is enterprise element 1 of PEN 32473.
        // firewallEvent/1 (233) and forwardingStatus/4 before it.
        let v4_len = 4 + 16 * 4 + 4;
        assert_eq!(
            (u16at(&t, 4 + v4_len - 16), u16at(&t, 4 + v4_len - 14)),
            (233, 1)
        );
        assert_eq!(
            (u16at(&t, 4 + v4_len - 12), u16at(&t, 4 + v4_len - 10)),
            (89, 4)
        );
        assert_eq!(u16at(&t, 4 + v4_len - 8), 0x8001);
        assert_eq!(u16at(&t, 4 + v4_len - 6), 4);
        assert_eq!(u32at(&t, 4 + v4_len - 4), 32473);
        assert_eq!(u16at(&t, 4 + v4_len), 257);
        assert_eq!(t.len(), 4 + 2 * v4_len);
    }

    #[test]
    fn a_v4_record_in_a_message() {
        let mut e = Encoder::new(42, 1400);
        let msgs = e.encode(1_796_533_201, false, &[rec("198.18.1.2", "198.18.2.2")]);
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0].0;
        assert_eq!(u16at(m, 0), 10);
        assert_eq!(u16at(m, 2) as usize, m.len());
        assert_eq!(u32at(m, 4), 1_796_533_201);
        assert_eq!(u32at(m, 8), 0, "first message: sequence 0");
        assert_eq!(u32at(m, 12), 42);
        assert_eq!(u16at(m, 16), 256);
        assert_eq!(u16at(m, 18) as usize, 4 + record_len(false));
        let r = &m[20..];
        assert_eq!(&r[..8], &[198, 18, 1, 2, 198, 18, 2, 2]);
        assert_eq!((u16at(r, 8), u16at(r, 10), r[12]), (40000, 80, 6));
        assert_eq!((u32at(r, 13), u32at(r, 17)), (2, 3));
        assert_eq!(u64::from_be_bytes(r[21..29].try_into().expect("8")), 10);
        assert_eq!(u64::from_be_bytes(r[29..37].try_into().expect("8")), 1500);
        // tcpControlBits, flowEndReason, firewallEvent, forwardingStatus, rule.
        assert_eq!(u16at(r, 53), 0x1b);
        assert_eq!((r[55], r[56]), (EndReason::EndOfFlow as u8, FLOW_DELETED));
        assert_eq!((u32at(r, 57), u32at(r, 61)), (FORWARDED, 7));
        assert_eq!(r.len(), record_len(false));
        assert_eq!(r.len(), 65);
        assert_eq!(e.sequence(), 1);
    }

    #[test]
    fn messages_are_cut_at_the_mtu_and_sequence_counts_records() {
        let mut e = Encoder::new(1, 512);
        let recs: Vec<FlowRecord> = (0..40)
            .map(|i| {
                if i % 3 == 0 {
                    rec("2001:db8:1::2", "2001:db8:2::2")
                } else {
                    rec("198.18.1.2", "198.18.2.2")
                }
            })
            .collect();
        let msgs = e.encode(0, true, &recs);
        assert!(msgs.len() > 1);
        let mut seq = 0;
        let mut total = 0;
        for (m, count) in &msgs {
            assert!(m.len() <= 512, "{}", m.len());
            assert_eq!(u16at(m, 2) as usize, m.len());
            assert_eq!(u32at(m, 8), seq);
            // Walk the sets: their lengths tile the message exactly.
            let mut i = 16;
            let mut n = 0;
            while i < m.len() {
                let (id, len) = (u16at(m, i), u16at(m, i + 2) as usize);
                if id >= 256 {
                    let rl = record_len(id == TEMPLATE_V6);
                    assert_eq!((len - 4) % rl, 0);
                    n += (len - 4) / rl;
                }
                i += len;
            }
            assert_eq!(i, m.len());
            assert_eq!(n as u32, *count);
            seq += n as u32;
            total += n;
        }
        assert_eq!(total, 40);
        assert_eq!(e.sequence(), 40);
    }

    #[test]
    fn templates_alone_make_one_message() {
        let mut e = Encoder::new(1, 1400);
        let msgs = e.encode(0, true, &[]);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0.len(), 16 + template_set().len());
        assert!(e.encode(0, false, &[]).is_empty());
    }
}
