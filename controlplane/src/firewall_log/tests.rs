use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_bucket_allows_a_burst_then_the_rate() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(10, 5, t0);
    let allowed = (0..8).filter(|_| b.take(t0).allowed).count();
    assert_eq!(allowed, 5, "a full bucket gives the burst");
    assert_eq!(b.pending(), 3);
    // 10/s: one token every 100 ms, not before.
    assert!(!b.take(t0 + ms(99)).allowed);
    let t = b.take(t0 + ms(100));
    assert_eq!(
        t,
        Take {
            allowed: true,
            summary: Some(4)
        },
        "the first event after suppression brings the count"
    );
    assert_eq!(b.pending(), 0);
    // A second at 10/s, after the bucket was empty: 10 events, no more.
    let t1 = t0 + ms(100);
    let later = t1 + Duration::from_secs(1);
    let allowed = (0..20).filter(|_| b.take(later).allowed).count();
    assert_eq!(allowed, 5, "refills stop at the burst size");
    // Spread over time: exactly the rate.
    let mut b = TokenBucket::new(10, 1, t0);
    let (mut allowed, mut summarised) = (0, 0);
    for i in 0..1000u64 {
        let t = b.take(t0 + ms(i * 10));
        allowed += u64::from(t.allowed);
        summarised += t.summary.unwrap_or(0);
    }
    assert_eq!(allowed, 1 + 99, "the burst, then 10/s over 9.99 s");
    assert_eq!(
        summarised + b.pending(),
        900,
        "every refused event is in a summary or pending"
    );
    assert_eq!(b.pending(), 9, "the ones after the last allowed event");
}

#[test]
fn a_summary_waits_for_a_token_and_comes_once() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(2, 1, t0);
    assert!(b.take(t0).allowed);
    for _ in 0..7 {
        assert!(!b.take(t0).allowed);
    }
    assert_eq!(b.flush(t0 + ms(100)), None, "still empty");
    assert_eq!(b.flush(t0 + ms(500)), Some(7));
    assert_eq!(b.flush(t0 + ms(600)), None, "once");
    // The summary did not spend the token.
    assert_eq!(
        b.take(t0 + ms(600)),
        Take {
            allowed: true,
            summary: None
        }
    );
}

#[test]
fn rate_zero_is_unlimited_and_limits_change_in_place() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(0, 1, t0);
    assert!((0..10_000).all(|_| b.take(t0).allowed));
    b.set_limits(1, 3, t0);
    // The bucket was full (burst 1): it keeps that one token.
    assert_eq!((0..5).filter(|_| b.take(t0).allowed).count(), 1);
    assert_eq!(b.pending(), 4);
    b.set_limits(1000, 3, t0);
    assert!(b.take(t0 + ms(1)).allowed);
    // Burst 0 means 1: a bucket that can never fill would log nothing.
    let mut b = TokenBucket::new(5, 0, t0);
    assert!(b.take(t0).allowed);
    assert!(!b.take(t0).allowed);
}

fn bytes_of(r: &FwLogRecord) -> Vec<u8> {
    // SAFETY: repr(C) integers with explicit padding: every byte is
    // initialised.
    unsafe {
        std::slice::from_raw_parts(
            (r as *const FwLogRecord).cast::<u8>(),
            std::mem::size_of::<FwLogRecord>(),
        )
    }
    .to_vec()
}

fn tcp_record() -> FwLogRecord {
    FwLogRecord {
        rule_id: 42,
        ifindex_in: 7,
        ifindex_out: 9,
        len: 74,
        chain: dataplane_common::CHAIN_FORWARD as u8,
        action: FW_DROP as u8,
        family: 4,
        proto: 6,
        src: dataplane_common::ipv4_mapped([198, 18, 1, 2]),
        dst: dataplane_common::ipv4_mapped([198, 18, 2, 2]),
        sport: 40000,
        dport: 23,
        icmp_type: 0,
        icmp_code: 0,
        tcp_flags: 0x12,
        flags: FW_LOG_F_PORTS | FW_LOG_F_TCP,
        _pad: [0; 4],
    }
}

#[test]
fn records_decode_from_their_bytes_and_nothing_else() {
    let r = tcp_record();
    let bytes = bytes_of(&r);
    assert_eq!(bytes.len(), 64);
    assert_eq!(decode(&bytes), Ok(r));
    // Little-endian fields where the layout says.
    assert_eq!(bytes[0..4], 42u32.to_le_bytes());
    assert_eq!(bytes[16..20], [0, 1, 4, 6]);
    assert_eq!(bytes[52..56], [0x40, 0x9c, 23, 0]);
    // Unaligned input is fine.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&bytes);
    assert_eq!(decode(&shifted[1..]), Ok(r));
    assert_eq!(
        decode(&bytes[..63]),
        Err(DecodeError {
            len: 63,
            expected: 64
        })
    );
    assert!(decode(&[0u8; 72]).is_err());
}

#[test]
fn event_fields_name_everything_the_record_holds() {
    let names = |i: u32| (i == 7).then(|| "eth1".to_owned());
    let (kind, v) = event_fields(&tcp_record(), names);
    assert_eq!(kind, "firewall_drop");
    assert_eq!(
        v,
        json!({
            "rule_id": 42, "chain": "forward", "action": "drop",
            "in_interface": "eth1", "out_interface": 9, "family": "ipv4", "proto": "tcp",
            "src": "198.18.1.2", "dst": "198.18.2.2", "sport": 40000, "dport": 23,
            "tcp_flags": "syn,ack", "len": 74
        })
    );

    let mut icmp6 = tcp_record();
    icmp6.chain = CHAIN_INPUT as u8;
    icmp6.action = FW_REJECT as u8;
    icmp6.family = 6;
    icmp6.proto = 58;
    icmp6.ifindex_out = 0;
    icmp6.src = "2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets();
    icmp6.dst = "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets();
    icmp6.icmp_type = 128;
    icmp6.icmp_code = 0;
    icmp6.flags = FW_LOG_F_ICMP;
    let (kind, v) = event_fields(&icmp6, |_| None);
    assert_eq!(kind, "firewall_reject");
    assert_eq!(
        v,
        json!({
            "rule_id": 42, "chain": "input", "action": "reject", "in_interface": 7,
            "family": "ipv6", "proto": "icmpv6", "src": "2001:db8:1::2",
            "dst": "2001:db8:1::1", "icmp_type": 128, "icmp_code": 0, "len": 74
        })
    );
}

#[test]
fn default_limits_are_sane() {
    let d = DropLogLimits::default();
    assert!(
        d.rate_per_s > 0 && d.burst >= d.rate_per_s && d.sample <= 1,
        "{d:?}"
    );
}
