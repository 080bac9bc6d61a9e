//! IPv4 DIR-24-8 (Gupta, Lin, McKeown, INFOCOM 1998; the scheme of DPDK's
//! `rte_lpm`), maintained beside the LPM trie: the prefix set per length,
//! the depth of every table entry, the `TBL8` group pool, and the entry
//! writes each change implies. The tables themselves sit behind
//! [`Dir24Store`]: the XDP program's mmapped `TBL24` / `TBL8`, or plain
//! vectors in tests. Encoding of an entry: dataplane-common `dir24.rs`.
//!
//! Every change is a sequence of single 32-bit entry stores ordered so
//! that a concurrent lookup sees, for every address, the old answer or the
//! new one, never a hole:
//! - a route is written over the entries it wins (those whose depth is not
//!   greater than its own), never first cleared;
//! - a removed route's entries are overwritten with its covering route
//!   (the longest shorter prefix of the set), or 0 if there is none;
//! - a new `TBL8` group is filled completely before the `TBL24` entry is
//!   pointed at it (a `Release` store); a group that is no longer needed
//!   is unhooked (its `TBL24` entry gets the block's covering value) and
//!   only reused after an RCU grace period ([`Dir24Store::quiesce`]), so a
//!   lookup that read the old pointer just before still finds the old
//!   contents. A fixed sleep would not do: a hypervisor can stop a vCPU in
//!   the middle of a packet for longer than any delay chosen here.
//!
//! A /24 block that needs a group when none is free is marked
//! `DIR24_LPM`: packets to it are answered by the LPM trie (which always
//! holds every route), and the change returns [`Dir24Error::Tbl8Full`].
//! The block stays on the trie until its last prefix longer than /24 goes.
use std::{collections::HashMap, net::Ipv4Addr};

use dataplane_common::{
    DIR24_BLOCK, DIR24_LPM, DIR24_TBL8, ROUTE_LOOKUP_DIR24, ROUTE_LOOKUP_LPM, Route, dir24_decode,
    dir24_encode,
};
use ipnet::Ipv4Net;
use serde::Serialize;

#[cfg(test)]
mod tests;

/// Entries of `TBL24`: one per /24 block.
pub const TBL24_ENTRIES: usize = 1 << 24;

/// The IPv4 route lookup of the XDP program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteLookup {
    /// DIR-24-8, the trie kept beside it as reference and fallback.
    #[default]
    Dir24,
    /// The BPF LPM trie alone (DIR-24-8 tables not allocated).
    Lpm,
}

impl RouteLookup {
    /// The `Config::route_lookup` value.
    pub fn config_value(self) -> u32 {
        match self {
            RouteLookup::Dir24 => ROUTE_LOOKUP_DIR24,
            RouteLookup::Lpm => ROUTE_LOOKUP_LPM,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RouteLookup::Dir24 => "dir24",
            RouteLookup::Lpm => "lpm",
        }
    }
}

impl std::fmt::Display for RouteLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RouteLookup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dir24" | "dir-24-8" => Ok(RouteLookup::Dir24),
            "lpm" | "trie" => Ok(RouteLookup::Lpm),
            _ => Err(format!("unknown route lookup {s:?}: expected dir24 or lpm")),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Dir24Error {
    #[error(
        "no free tbl8 group for {prefix} (all {groups} in use): its /24 block is served by the \
         LPM trie; raise --tbl8-groups"
    )]
    Tbl8Full { prefix: Ipv4Net, groups: u32 },
    #[error("route {route:?} for {prefix} does not fit a DIR-24-8 entry")]
    Unencodable { prefix: Ipv4Net, route: Route },
    #[error(
        "could not wait for an RCU grace period before reusing a tbl8 group for {prefix} \
         ({reason}): its /24 block is served by the LPM trie"
    )]
    Quiesce {
        prefix: Ipv4Net,
        /// The wait's error (text: the error type stays comparable).
        reason: String,
    },
}

/// The two tables, as the XDP program reads them. Stores are single
/// 32-bit writes; `set_tbl24` also orders every earlier store before it.
pub trait Dir24Store {
    /// Entry of /24 block `i` (`0..TBL24_ENTRIES`).
    fn tbl24(&self, i: usize) -> u32;
    fn set_tbl24(&mut self, i: usize, entry: u32);
    /// Entry `j` of group `g`.
    fn tbl8(&self, g: u32, j: usize) -> u32;
    fn set_tbl8(&mut self, g: u32, j: usize, entry: u32);
    /// Number of `TBL8` groups.
    fn groups(&self) -> u32;
    /// Return once every lookup that started before the call has finished
    /// (for the XDP program: an RCU grace period, `dataplane::RcuBarrier`).
    fn quiesce(&mut self) -> std::io::Result<()>;
}

/// Tables in plain memory: tests, and the reference of the mmapped ones.
pub struct VecStore {
    tbl24: Vec<u32>,
    tbl8: Vec<u32>,
    /// Calls of [`Dir24Store::quiesce`] so far.
    pub quiesces: u32,
}

impl VecStore {
    pub fn new(groups: u32) -> Self {
        Self {
            tbl24: vec![0; TBL24_ENTRIES],
            tbl8: vec![0; groups as usize * DIR24_BLOCK],
            quiesces: 0,
        }
    }
}

impl Dir24Store for VecStore {
    fn tbl24(&self, i: usize) -> u32 {
        self.tbl24[i]
    }
    fn set_tbl24(&mut self, i: usize, entry: u32) {
        self.tbl24[i] = entry;
    }
    fn tbl8(&self, g: u32, j: usize) -> u32 {
        self.tbl8[g as usize * DIR24_BLOCK + j]
    }
    fn set_tbl8(&mut self, g: u32, j: usize, entry: u32) {
        self.tbl8[g as usize * DIR24_BLOCK + j] = entry;
    }
    fn groups(&self) -> u32 {
        (self.tbl8.len() / DIR24_BLOCK) as u32
    }
    fn quiesce(&mut self) -> std::io::Result<()> {
        // No concurrent readers: every lookup has already finished.
        self.quiesces += 1;
        Ok(())
    }
}

/// What a lookup in the tables answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    NoRoute,
    Route(Route),
    /// The block is served by the LPM trie.
    Lpm,
}

/// How full the tables are, for the stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Dir24Usage {
    /// IPv4 prefixes held.
    pub prefixes: usize,
    pub tbl8_groups_used: u32,
    pub tbl8_groups: u32,
    /// /24 blocks served by the LPM trie because no group was free.
    pub lpm_blocks: usize,
}

/// `TBL8` groups: never-used ones first, then freed ones that have been
/// through a grace period; when only groups freed since the last one are
/// left, one grace period releases all of them (one wait per batch, not per
/// group).
#[derive(Debug)]
struct GroupPool {
    capacity: u32,
    next_unused: u32,
    /// Freed since the last grace period: a lookup may still hold them.
    resting: Vec<u32>,
    /// Freed before a grace period that has ended: free to reuse.
    rested: Vec<u32>,
}

impl GroupPool {
    /// A group no lookup can be reading, waiting for a grace period
    /// through `quiesce` if that is the only way to get one; `Ok(None)`
    /// when every group is in use.
    fn take(
        &mut self,
        quiesce: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<Option<u32>> {
        if self.next_unused < self.capacity {
            self.next_unused += 1;
            return Ok(Some(self.next_unused - 1));
        }
        if self.rested.is_empty() && !self.resting.is_empty() {
            quiesce()?;
            self.rested.append(&mut self.resting);
        }
        Ok(self.rested.pop())
    }

    fn give(&mut self, g: u32) {
        self.resting.push(g);
    }

    fn used(&self) -> u32 {
        self.next_unused - (self.resting.len() + self.rested.len()) as u32
    }
}

/// A host-order address's /24 block and the entry within it.
fn split(addr: u32) -> (usize, usize) {
    ((addr >> 8) as usize, (addr & 0xff) as usize)
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

/// Depth as kept per entry: prefix length + 1; 0 is "no route".
fn depth(len: u8) -> u8 {
    len + 1
}

/// The userspace half of DIR-24-8.
pub struct Dir24<S> {
    store: S,
    /// Network address (host order) -> entry, per prefix length 0..=32.
    prefixes: Vec<HashMap<u32, u32>>,
    /// Depth of each `TBL24` entry that holds a route (or 0).
    depth24: Vec<u8>,
    /// Depth of each `TBL8` entry.
    depth8: Vec<u8>,
    /// Per group: prefixes longer than /24 in its block.
    refs: Vec<u32>,
    /// Blocks on the trie: prefixes longer than /24 in each.
    lpm_blocks: HashMap<usize, u32>,
    pool: GroupPool,
}

impl<S: Dir24Store> Dir24<S> {
    /// Empty tables over `store`, which must be all zero.
    pub fn new(store: S) -> Self {
        let groups = store.groups();
        Self {
            store,
            prefixes: vec![HashMap::new(); 33],
            depth24: vec![0; TBL24_ENTRIES],
            depth8: vec![0; groups as usize * DIR24_BLOCK],
            refs: vec![0; groups as usize],
            lpm_blocks: HashMap::new(),
            pool: GroupPool {
                capacity: groups,
                next_unused: 0,
                resting: Vec::new(),
                rested: Vec::new(),
            },
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn usage(&self) -> Dir24Usage {
        Dir24Usage {
            prefixes: self.prefixes.iter().map(HashMap::len).sum(),
            tbl8_groups_used: self.pool.used(),
            tbl8_groups: self.pool.capacity,
            lpm_blocks: self.lpm_blocks.len(),
        }
    }

    /// What the XDP program reads for `addr`.
    pub fn lookup(&self, addr: Ipv4Addr) -> Answer {
        let (i, j) = split(addr.into());
        let mut e = self.store.tbl24(i);
        if e & DIR24_TBL8 != 0 {
            e = self.store.tbl8(e & !DIR24_TBL8, j);
        }
        match e {
            0 => Answer::NoRoute,
            DIR24_LPM => Answer::Lpm,
            e => Answer::Route(dir24_decode(e)),
        }
    }

    /// Add or replace the route of `prefix`. On [`Dir24Error::Tbl8Full`]
    /// the route is held and its block marked for the trie: the tables are
    /// consistent, only slower for that block.
    pub fn set(&mut self, prefix: Ipv4Net, route: Route) -> Result<(), Dir24Error> {
        let prefix = prefix.trunc();
        let value = dir24_encode(route).ok_or(Dir24Error::Unencodable { prefix, route })?;
        let (net, len) = (u32::from(prefix.network()), prefix.prefix_len());
        let is_new = self.prefixes[len as usize].insert(net, value).is_none();
        let d = depth(len);
        if len <= 24 {
            let (start, _) = split(net);
            for i in start..start + (1 << (24 - len)) {
                self.write_block(i, |old| old <= d, value, d);
            }
            return Ok(());
        }
        let (i, j0) = split(net);
        let e = self.store.tbl24(i);
        let g = if e & DIR24_TBL8 != 0 {
            e & !DIR24_TBL8
        } else if e == DIR24_LPM {
            if is_new {
                *self.lpm_blocks.entry(i).or_default() += 1;
            }
            return Ok(());
        } else {
            let store = &mut self.store;
            match self.pool.take(|| store.quiesce()) {
                Ok(Some(g)) => {
                    // The whole group first, then the pointer to it.
                    let d24 = self.depth24[i];
                    for j in 0..DIR24_BLOCK {
                        self.store.set_tbl8(g, j, e);
                        self.depth8[g as usize * DIR24_BLOCK + j] = d24;
                    }
                    self.store.set_tbl24(i, DIR24_TBL8 | g);
                    g
                }
                taken => {
                    // The trie already has the route (written first).
                    self.store.set_tbl24(i, DIR24_LPM);
                    self.lpm_blocks.insert(i, 1);
                    return Err(match taken {
                        Err(e) => Dir24Error::Quiesce {
                            prefix,
                            reason: e.to_string(),
                        },
                        _ => Dir24Error::Tbl8Full {
                            prefix,
                            groups: self.pool.capacity,
                        },
                    });
                }
            }
        };
        if is_new {
            self.refs[g as usize] += 1;
        }
        for j in j0..j0 + (1 << (32 - len)) {
            let k = g as usize * DIR24_BLOCK + j;
            if self.depth8[k] <= d {
                self.store.set_tbl8(g, j, value);
                self.depth8[k] = d;
            }
        }
        Ok(())
    }

    /// Remove the route of `prefix`; false if there was none.
    pub fn remove(&mut self, prefix: Ipv4Net) -> bool {
        let prefix = prefix.trunc();
        let (net, len) = (u32::from(prefix.network()), prefix.prefix_len());
        if self.prefixes[len as usize].remove(&net).is_none() {
            return false;
        }
        let (cover, cover_depth) = self.cover(net, len);
        let d = depth(len);
        if len <= 24 {
            let (start, _) = split(net);
            for i in start..start + (1 << (24 - len)) {
                self.write_block(i, |old| old == d, cover, cover_depth);
            }
            return true;
        }
        let (i, j0) = split(net);
        let e = self.store.tbl24(i);
        if e == DIR24_LPM {
            let n = self
                .lpm_blocks
                .get_mut(&i)
                .expect("an LPM block is counted");
            *n -= 1;
            if *n == 0 {
                self.lpm_blocks.remove(&i);
                let (v, vd) = self.cover(net, 25);
                self.store.set_tbl24(i, v);
                self.depth24[i] = vd;
            }
            return true;
        }
        debug_assert!(e & DIR24_TBL8 != 0, "a prefix longer than /24 has a group");
        let g = e & !DIR24_TBL8;
        for j in j0..j0 + (1 << (32 - len)) {
            let k = g as usize * DIR24_BLOCK + j;
            if self.depth8[k] == d {
                self.store.set_tbl8(g, j, cover);
                self.depth8[k] = cover_depth;
            }
        }
        self.refs[g as usize] -= 1;
        if self.refs[g as usize] == 0 {
            // Only the block's covering route (/24 or shorter) is left, in
            // every entry: back into TBL24, then the group rests.
            let k = g as usize * DIR24_BLOCK;
            let (v, vd) = (self.store.tbl8(g, 0), self.depth8[k]);
            self.store.set_tbl24(i, v);
            self.depth24[i] = vd;
            self.pool.give(g);
        }
        true
    }

    /// The longest prefix shorter than `len` covering `net`: its entry and
    /// depth, or (0, 0).
    fn cover(&self, net: u32, len: u8) -> (u32, u8) {
        for l in (0..len).rev() {
            if let Some(&v) = self.prefixes[l as usize].get(&(net & mask(l))) {
                return (v, depth(l));
            }
        }
        (0, 0)
    }

    /// Write (`value`, `d`) over the entries of /24 block `i` whose depth
    /// passes `wins`: the `TBL24` entry, or every entry of its group. A
    /// block on the trie is the trie's.
    fn write_block(&mut self, i: usize, wins: impl Fn(u8) -> bool, value: u32, d: u8) {
        let e = self.store.tbl24(i);
        if e & DIR24_TBL8 != 0 {
            let g = e & !DIR24_TBL8;
            for j in 0..DIR24_BLOCK {
                let k = g as usize * DIR24_BLOCK + j;
                if wins(self.depth8[k]) {
                    self.store.set_tbl8(g, j, value);
                    self.depth8[k] = d;
                }
            }
        } else if e != DIR24_LPM && wins(self.depth24[i]) {
            self.store.set_tbl24(i, value);
            self.depth24[i] = d;
        }
    }
}
