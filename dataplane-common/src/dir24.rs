//! IPv4 DIR-24-8 route lookup (Gupta, Lin, McKeown, "Routing Lookups in
//! Hardware at Memory Access Speeds", INFOCOM 1998; DPDK's `rte_lpm`):
//! `TBL24` answers any prefix up to /24 with one read, `TBL8` groups of 256
//! entries the /24 blocks that hold longer prefixes, with a second.
//!
//! Both arrays hold one [`Dir24Block`] (256 entries) per element, so an
//! entry costs 4 bytes (an array of `u32` would cost 8: the kernel rounds
//! array elements up to 8 bytes, kernel/bpf/arraymap.c array_map_alloc).
//! `TBL24` element `a >> 16` holds the entries of the 256 /24 blocks of
//! that /16; `TBL8` element `g` is group `g`.
//!
//! An entry is a `u32`:
//! - `0`: no route;
//! - [`DIR24_TBL8`] set: the block's entries are in `TBL8` group
//!   `entry & !DIR24_TBL8` (only in `TBL24`);
//! - [`DIR24_LPM`]: ask the LPM trie (a /24 block with prefixes longer than
//!   /24 for which no `TBL8` group was free; only in `TBL24`);
//! - otherwise the route itself, [`dir24_encode`]d: `(kind + 1) << 24 | nh`.
//!   The route is encoded rather than indexed: a `Route` is 8 bytes of
//!   which a kind (< 8) and a next-hop or group id (< 2^16) are used, so it
//!   fits, and the lookup saves a third dependent map read.
use crate::Route;

/// Entries per block: the 256 addresses below one /24, or the 256 /24s
/// below one /16.
pub const DIR24_BLOCK: usize = 256;
/// One element of `TBL24` or `TBL8`.
pub type Dir24Block = [u32; DIR24_BLOCK];
/// Elements of `TBL24`: one per /16 (2^24 entries in all, 64 MiB).
pub const DIR24_TBL24_BLOCKS: u32 = 1 << 16;
/// Default number of `TBL8` groups (1 KiB each); the daemon can load the
/// program with another (`--tbl8-groups`).
pub const DIR24_DEFAULT_TBL8_GROUPS: u32 = 8192;

/// Entry bit: the rest is a `TBL8` group index.
pub const DIR24_TBL8: u32 = 1 << 31;
/// Entry value: this /24 block is served by the LPM trie.
pub const DIR24_LPM: u32 = 0x7fff_ffff;
/// Largest next-hop / group id an entry can carry.
pub const DIR24_MAX_NH: u32 = (1 << 24) - 1;

/// `Config::route_lookup`: the LPM trie (also what an all-zero CONFIG
/// means, so a program whose DIR-24-8 tables were never written is safe).
pub const ROUTE_LOOKUP_LPM: u32 = 0;
/// `Config::route_lookup`: DIR-24-8 for IPv4 (IPv6 stays on the trie).
pub const ROUTE_LOOKUP_DIR24: u32 = 1;

/// The entry for `route`; `None` if it does not fit (a kind above 125 or
/// an id above [`DIR24_MAX_NH`]: never produced by the control plane).
pub const fn dir24_encode(route: Route) -> Option<u32> {
    if route.kind >= 126 || route.nh > DIR24_MAX_NH {
        return None;
    }
    Some(((route.kind + 1) << 24) | route.nh)
}

/// The route of a route entry (not 0, not a `TBL8` pointer, not
/// [`DIR24_LPM`]).
#[inline(always)]
pub const fn dir24_decode(entry: u32) -> Route {
    Route {
        kind: (entry >> 24).wrapping_sub(1),
        nh: entry & DIR24_MAX_NH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_never_collides_with_markers() {
        for kind in 0..8 {
            for nh in [0, 1, 65_535, DIR24_MAX_NH] {
                let r = Route { kind, nh };
                let e = dir24_encode(r).expect("fits");
                assert_ne!(e, 0);
                assert_eq!(e & DIR24_TBL8, 0);
                assert_ne!(e, DIR24_LPM);
                assert_eq!(dir24_decode(e), r);
            }
        }
        assert_eq!(
            dir24_encode(Route {
                kind: 0,
                nh: 1 << 24
            }),
            None
        );
    }
}
