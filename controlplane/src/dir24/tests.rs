use std::{collections::BTreeMap, net::Ipv4Addr};

use dataplane_common::{ROUTE_BLACKHOLE, ROUTE_UNICAST, Route};
use ipnet::Ipv4Net;

use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test prefix")
}

fn via(nh: u32) -> Route {
    Route {
        kind: ROUTE_UNICAST,
        nh,
    }
}

fn table(groups: u32) -> Dir24<VecStore> {
    Dir24::new(VecStore::new(groups))
}

#[track_caller]
fn answer(t: &Dir24<VecStore>, a: &str) -> Answer {
    t.lookup(a.parse().expect("test address"))
}

/// The reference: longest-prefix match over the set, the slow way.
#[derive(Default)]
struct Reference(BTreeMap<(u8, u32), Route>);

impl Reference {
    fn lookup(&self, a: u32) -> Option<Route> {
        (0..=32u8)
            .rev()
            .find_map(|l| self.0.get(&(l, a & mask(l))).copied())
    }
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn short_and_long_prefixes_resolve_by_length() {
    let mut t = table(4);
    t.set(net("10.0.0.0/8"), via(1)).unwrap();
    t.set(net("10.1.0.0/16"), via(2)).unwrap();
    t.set(net("10.1.2.0/24"), via(3)).unwrap();
    t.set(net("10.1.2.128/25"), via(4)).unwrap();
    t.set(net("10.1.2.200/32"), via(5)).unwrap();
    assert_eq!(answer(&t, "10.9.9.9"), Answer::Route(via(1)));
    assert_eq!(answer(&t, "10.1.9.9"), Answer::Route(via(2)));
    assert_eq!(answer(&t, "10.1.2.1"), Answer::Route(via(3)));
    assert_eq!(answer(&t, "10.1.2.129"), Answer::Route(via(4)));
    assert_eq!(answer(&t, "10.1.2.200"), Answer::Route(via(5)));
    assert_eq!(answer(&t, "11.0.0.1"), Answer::NoRoute);
    assert_eq!(t.usage().tbl8_groups_used, 1);
}

#[test]
fn removing_a_more_specific_restores_the_covering_route() {
    let mut t = table(4);
    t.set(net("10.0.0.0/8"), via(1)).unwrap();
    t.set(net("10.1.2.0/24"), via(3)).unwrap();
    t.set(net("10.1.2.0/30"), via(4)).unwrap();
    assert!(t.remove(net("10.1.2.0/24")));
    assert_eq!(answer(&t, "10.1.2.9"), Answer::Route(via(1)));
    assert_eq!(answer(&t, "10.1.2.1"), Answer::Route(via(4)));
    assert!(t.remove(net("10.1.2.0/30")));
    assert_eq!(answer(&t, "10.1.2.1"), Answer::Route(via(1)));
    // The group went back to the pool, its block back into TBL24.
    assert_eq!(t.usage().tbl8_groups_used, 0);
    assert_eq!(t.store().tbl24(0x0a0102), dir24_encode(via(1)).unwrap());
    assert!(t.remove(net("10.0.0.0/8")));
    assert_eq!(answer(&t, "10.1.2.1"), Answer::NoRoute);
    assert!(!t.remove(net("10.0.0.0/8")));
}

#[test]
fn a_shorter_route_added_later_does_not_override_longer_ones() {
    let mut t = table(4);
    t.set(net("192.0.2.0/24"), via(3)).unwrap();
    t.set(net("192.0.2.64/26"), via(4)).unwrap();
    t.set(net("192.0.0.0/16"), via(2)).unwrap();
    t.set(net("0.0.0.0/0"), via(9)).unwrap();
    assert_eq!(answer(&t, "192.0.2.65"), Answer::Route(via(4)));
    assert_eq!(answer(&t, "192.0.2.1"), Answer::Route(via(3)));
    assert_eq!(answer(&t, "192.0.3.1"), Answer::Route(via(2)));
    assert_eq!(answer(&t, "8.8.8.8"), Answer::Route(via(9)));
    // Replacing a route rewrites exactly its own entries.
    t.set(net("192.0.2.0/24"), via(7)).unwrap();
    assert_eq!(answer(&t, "192.0.2.1"), Answer::Route(via(7)));
    assert_eq!(answer(&t, "192.0.2.65"), Answer::Route(via(4)));
    let blackhole = Route {
        kind: ROUTE_BLACKHOLE,
        nh: 0,
    };
    t.set(net("192.0.2.64/26"), blackhole).unwrap();
    assert_eq!(answer(&t, "192.0.2.65"), Answer::Route(blackhole));
}

#[test]
fn groups_are_reference_counted_per_block() {
    let mut t = table(2);
    t.set(net("10.0.0.0/25"), via(1)).unwrap();
    t.set(net("10.0.0.128/25"), via(2)).unwrap();
    t.set(net("10.0.0.7/32"), via(3)).unwrap();
    assert_eq!(t.usage().tbl8_groups_used, 1);
    // Replacing is not another reference.
    t.set(net("10.0.0.7/32"), via(4)).unwrap();
    assert!(t.remove(net("10.0.0.0/25")));
    assert!(t.remove(net("10.0.0.7/32")));
    assert_eq!(t.usage().tbl8_groups_used, 1);
    assert_eq!(answer(&t, "10.0.0.7"), Answer::NoRoute);
    assert_eq!(answer(&t, "10.0.0.200"), Answer::Route(via(2)));
    assert!(t.remove(net("10.0.0.128/25")));
    assert_eq!(t.usage().tbl8_groups_used, 0);
    assert_eq!(t.store().tbl24(0x0a0000), 0);
}

#[test]
fn running_out_of_groups_is_an_error_and_the_block_goes_to_the_trie() {
    let mut t = table(1);
    t.set(net("10.0.0.0/8"), via(1)).unwrap();
    t.set(net("10.0.0.0/25"), via(2)).unwrap();
    let err = t.set(net("10.0.1.0/25"), via(3)).unwrap_err();
    assert_eq!(
        err,
        Dir24Error::Tbl8Full {
            prefix: net("10.0.1.0/25"),
            groups: 1
        }
    );
    assert!(err.to_string().contains("--tbl8-groups"), "{err}");
    assert_eq!(answer(&t, "10.0.1.1"), Answer::Lpm);
    assert_eq!(answer(&t, "10.0.1.200"), Answer::Lpm);
    // Other blocks are not affected; a shorter route leaves the block alone.
    assert_eq!(answer(&t, "10.0.0.1"), Answer::Route(via(2)));
    t.set(net("10.0.1.0/24"), via(4)).unwrap();
    assert_eq!(answer(&t, "10.0.1.1"), Answer::Lpm);
    assert_eq!(answer(&t, "10.0.2.1"), Answer::Route(via(1)));
    assert_eq!(t.usage().lpm_blocks, 1);
    // The last long prefix gone, the block is back with its covering route.
    t.set(net("10.0.1.128/26"), via(5)).unwrap();
    assert!(t.remove(net("10.0.1.0/25")));
    assert_eq!(answer(&t, "10.0.1.1"), Answer::Lpm);
    assert!(t.remove(net("10.0.1.128/26")));
    assert_eq!(answer(&t, "10.0.1.1"), Answer::Route(via(4)));
    assert_eq!(t.usage().lpm_blocks, 0);
    // A freed group serves the next block that needs one.
    assert!(t.remove(net("10.0.0.0/25")));
    t.set(net("10.0.3.0/26"), via(6)).unwrap();
    assert_eq!(answer(&t, "10.0.3.1"), Answer::Route(via(6)));
}

#[test]
fn a_freed_group_is_reused_only_after_a_grace_period_one_per_batch() {
    let mut t = Dir24::new(VecStore::new(2));
    t.set(net("10.0.0.0/25"), via(1)).unwrap();
    t.set(net("10.0.1.0/25"), via(2)).unwrap();
    assert_eq!(t.store().quiesces, 0, "never-used groups need no wait");
    assert!(t.remove(net("10.0.0.0/25")));
    assert!(t.remove(net("10.0.1.0/25")));
    assert_eq!(t.usage().tbl8_groups_used, 0);
    // Both freed groups are released by one grace period.
    t.set(net("10.0.2.0/25"), via(3)).unwrap();
    assert_eq!(t.store().quiesces, 1);
    t.set(net("10.0.3.0/25"), via(4)).unwrap();
    assert_eq!(t.store().quiesces, 1, "the second had rested already");
    assert_eq!(answer(&t, "10.0.2.1"), Answer::Route(via(3)));
    assert_eq!(answer(&t, "10.0.3.1"), Answer::Route(via(4)));
    // One freed just now: the next block waits for a new grace period.
    assert!(t.remove(net("10.0.2.0/25")));
    t.set(net("10.0.4.0/25"), via(5)).unwrap();
    assert_eq!(t.store().quiesces, 2);
    assert_eq!(answer(&t, "10.0.4.1"), Answer::Route(via(5)));
}

/// A store whose grace-period wait fails: the block goes to the trie,
/// nothing is reused, and the error says why.
#[test]
fn a_failed_grace_period_wait_reuses_nothing() {
    struct Failing(VecStore);
    impl Dir24Store for Failing {
        fn tbl24(&self, i: usize) -> u32 {
            self.0.tbl24(i)
        }
        fn set_tbl24(&mut self, i: usize, e: u32) {
            self.0.set_tbl24(i, e)
        }
        fn tbl8(&self, g: u32, j: usize) -> u32 {
            self.0.tbl8(g, j)
        }
        fn set_tbl8(&mut self, g: u32, j: usize, e: u32) {
            self.0.set_tbl8(g, j, e)
        }
        fn groups(&self) -> u32 {
            self.0.groups()
        }
        fn quiesce(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::EPERM))
        }
    }
    let mut t = Dir24::new(Failing(VecStore::new(1)));
    t.set(net("10.0.0.0/25"), via(1)).unwrap();
    assert!(t.remove(net("10.0.0.0/25")));
    let e = t.set(net("10.0.1.0/25"), via(2)).unwrap_err();
    assert!(matches!(e, Dir24Error::Quiesce { .. }), "{e}");
    assert!(e.to_string().contains("10.0.1.0/25"), "{e}");
    assert_eq!(t.lookup("10.0.1.1".parse().unwrap()), Answer::Lpm);
    assert_eq!(t.usage().lpm_blocks, 1);
}

#[test]
fn unencodable_routes_are_refused() {
    let mut t = table(1);
    let r = Route {
        kind: 0,
        nh: 1 << 24,
    };
    assert!(matches!(
        t.set(net("10.0.0.0/8"), r),
        Err(Dir24Error::Unencodable { .. })
    ));
}

/// Random tables with heavy overlap and churn against the reference,
/// every answer checked after every batch.
#[test]
fn random_churn_matches_a_reference_lpm() {
    let mut rng = Rng(0x6469_7232_3438);
    // Groups for a share of the blocks only: some go to the trie.
    let mut t = table(96);
    let mut reference = Reference::default();
    let mut live: Vec<(u8, u32)> = Vec::new();
    // A small address region, so prefixes overlap a lot: 10.0.0.0/14.
    // Lengths /14-/32, and now and then a shorter one (each of those
    // rewrites up to 2^24 entries: slow in a debug build).
    let draw = |rng: &mut Rng| {
        let len = if rng.next().is_multiple_of(64) {
            (rng.next() % 14) as u8
        } else {
            14 + (rng.next() % 19) as u8
        };
        let a = 0x0a00_0000 | (rng.next() as u32 & 0x0003_ffff);
        (len, a & mask(len))
    };
    let mut fell_back = 0;
    for batch in 0..30 {
        for _ in 0..200 {
            if rng.next().is_multiple_of(3) && !live.is_empty() {
                let k = live.swap_remove(rng.next() as usize % live.len());
                reference.0.remove(&k);
                assert!(t.remove(Ipv4Net::new(Ipv4Addr::from(k.1), k.0).unwrap()));
            } else {
                let (len, a) = draw(&mut rng);
                let r = via(1 + (rng.next() % 1000) as u32);
                if reference.0.insert((len, a), r).is_none() {
                    live.push((len, a));
                }
                match t.set(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap(), r) {
                    Ok(()) => {}
                    Err(Dir24Error::Tbl8Full { .. }) => fell_back += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        for _ in 0..2000 {
            let a = if rng.next().is_multiple_of(8) {
                rng.next() as u32
            } else {
                0x0a00_0000 | (rng.next() as u32 & 0x0003_ffff)
            };
            let want = reference.lookup(a);
            match t.lookup(Ipv4Addr::from(a)) {
                Answer::Lpm => {
                    // Only blocks that hold a prefix longer than /24.
                    let block = a & mask(24);
                    assert!(
                        reference
                            .0
                            .keys()
                            .any(|&(l, n)| l > 24 && n & mask(24) == block),
                        "batch {batch}: {} on the trie without a long prefix",
                        Ipv4Addr::from(a)
                    );
                }
                Answer::NoRoute => assert_eq!(want, None, "batch {batch}: {}", Ipv4Addr::from(a)),
                Answer::Route(r) => {
                    assert_eq!(Some(r), want, "batch {batch}: {}", Ipv4Addr::from(a))
                }
            }
        }
        let u = t.usage();
        assert_eq!(u.prefixes, live.len());
        assert!(u.tbl8_groups_used <= u.tbl8_groups);
    }
    assert!(fell_back > 0, "the test is meant to exhaust the groups");
    // Everything removed: every table is empty again.
    for (len, a) in live.drain(..) {
        assert!(t.remove(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap()));
    }
    assert_eq!(t.usage().tbl8_groups_used, 0);
    assert_eq!(t.usage().lpm_blocks, 0);
    for i in 0x0a0000..0x0a0400 {
        assert_eq!(t.store().tbl24(i), 0, "block {i:#x}");
    }
}
