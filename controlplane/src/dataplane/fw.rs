//! The firewall and connection-tracking maps: writing a compiled ruleset
//! into a generation, flipping the active generation, reading rule
//! counters and the connection table.
//!
//! The big dense tables (bitmap pool, rule actions, field ids) are
//! `BPF_F_MMAPABLE` arrays written through `mmap` (kernel/bpf/arraymap.c
//! array_map_mmap): a commit of 4,096 rules is a few megabytes of memcpy
//! instead of hundreds of thousands of `bpf()` calls.
use std::{collections::HashSet, net::IpAddr};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues,
        lpm_trie::{Key, LpmTrie},
    },
    util::nr_cpus,
};
use dataplane_common::{
    CT_TIMEOUTS, ChainInfo, Config, Counter, CtEntry, CtKey, FIELD_STRIDE, FW_CHAINS,
    FW_COUNTERS_PER_TABLE, FW_MAX_RULES, FwIfaceKey, FwPrefixV4, FwPrefixV6, FwRule, RuleBitmap,
    fw_prefix_tag,
};
use ipnet::IpNet;

use super::{Count, DataplaneError, ignore_missing, map_err, mmap::MmapArray, take_map};
use crate::firewall::compile::Compiled;

/// Keys written into one generation's sparse maps, so the next write of
/// that generation removes what the new ruleset no longer has.
#[derive(Default)]
pub struct GenerationKeys {
    ifaces: HashSet<FwIfaceKey>,
    prefixes: HashSet<(u8, IpNet)>,
}

/// What an install wrote, for the commit summary.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct InstallStats {
    pub bitmaps: usize,
    pub prefixes: usize,
    pub prefixes_removed: usize,
}

/// Handles of the firewall and conntrack maps.
pub struct FirewallMaps {
    config: Array<MapData, Config>,
    chain_info: Array<MapData, ChainInfo>,
    ifaces: HashMap<MapData, FwIfaceKey, u32>,
    prefixes_v4: LpmTrie<MapData, FwPrefixV4, u32>,
    prefixes_v6: LpmTrie<MapData, FwPrefixV6, u32>,
    counters: PerCpuArray<MapData, Counter>,
    conntrack: HashMap<MapData, CtKey, CtEntry>,
    /// A second descriptor of the table, for readers of their own.
    conntrack_fd: std::os::fd::OwnedFd,
    conntrack_capacity: u32,
    bitmaps: MmapArray<RuleBitmap>,
    rules: MmapArray<FwRule>,
    fields: MmapArray<u32>,
    keys: [GenerationKeys; 2],
    barrier: std::sync::Arc<super::RcuBarrier>,
}

impl FirewallMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        macro_rules! typed {
            ($name:literal) => {
                take_map(ebpf, $name)?.try_into().map_err(map_err($name))?
            };
        }
        let ct = take_map(ebpf, "CONNTRACK")?;
        let (conntrack_capacity, conntrack_fd) = match &ct {
            Map::LruHashMap(data) => (
                data.info().map_err(map_err("CONNTRACK"))?.max_entries(),
                dup_fd(data)?,
            ),
            _ => return Err(DataplaneError::MissingMap("CONNTRACK")),
        };
        Ok(Self {
            config: typed!("CONFIG"),
            chain_info: typed!("FW_CHAIN_INFO"),
            ifaces: typed!("FW_IFACES"),
            prefixes_v4: typed!("FW_PREFIXES_V4"),
            prefixes_v6: typed!("FW_PREFIXES_V6"),
            counters: typed!("FW_COUNTERS"),
            conntrack: ct.try_into().map_err(map_err("CONNTRACK"))?,
            conntrack_fd,
            conntrack_capacity,
            bitmaps: MmapArray::new(ebpf, "FW_BITMAPS")?,
            rules: MmapArray::new(ebpf, "FW_RULES")?,
            fields: MmapArray::new(ebpf, "FW_FIELDS")?,
            keys: Default::default(),
            barrier: std::sync::Arc::new(
                super::RcuBarrier::new().map_err(DataplaneError::Barrier)?,
            ),
        })
    }

    /// Waits for an RCU grace period (see `dataplane::rcu`): after a flip,
    /// until no packet can still be reading the old generation.
    pub fn barrier(&self) -> std::sync::Arc<super::RcuBarrier> {
        self.barrier.clone()
    }

    /// Bitmaps one generation may use (half the pool).
    pub fn bitmaps_per_generation(&self) -> u32 {
        self.bitmaps.entries / 2
    }

    /// First bitmap id of generation `gen`.
    pub fn bitmap_base(&self, generation: u32) -> u32 {
        generation * self.bitmaps_per_generation()
    }

    pub fn config(&self) -> Result<Config, DataplaneError> {
        self.config.get(&0, 0).map_err(map_err("CONFIG"))
    }

    pub fn set_config(&mut self, config: &Config) -> Result<(), DataplaneError> {
        self.config.set(0, config, 0).map_err(map_err("CONFIG"))
    }

    /// The generation packets are classified with.
    pub fn active_generation(&self) -> Result<u32, DataplaneError> {
        Ok(self.config()?.fw_generation & 1)
    }

    /// Write `compiled` (built with base [`Self::bitmap_base`]`(generation)`)
    /// into `generation`, which must not be the active one. Nothing a packet
    /// reads changes until [`Self::flip`].
    pub fn install(
        &mut self,
        generation: u32,
        compiled: &Compiled,
    ) -> Result<InstallStats, DataplaneError> {
        assert_eq!(compiled.base, self.bitmap_base(generation));
        self.bitmaps.write(compiled.base, &compiled.bitmaps);
        let mut stats = InstallStats {
            bitmaps: compiled.bitmaps.len(),
            ..Default::default()
        };
        let mut keys = GenerationKeys::default();
        for chain in &compiled.chains {
            let table = generation * FW_CHAINS + chain.chain.index();
            self.fields.write(table * FIELD_STRIDE, &chain.fields);
            self.rules.write(table * FW_MAX_RULES, &chain.rules);
            for &(dir, ifindex, id) in &chain.ifaces {
                let key = FwIfaceKey {
                    table: table as u8,
                    dir,
                    _pad: [0; 2],
                    ifindex,
                };
                self.ifaces
                    .insert(key, id, 0)
                    .map_err(map_err("FW_IFACES"))?;
                keys.ifaces.insert(key);
            }
            for &(side, net, id) in &chain.prefixes {
                let tag = fw_prefix_tag(table, side);
                self.set_prefix(tag, net, id)?;
                keys.prefixes.insert((tag, net));
            }
            stats.prefixes += chain.prefixes.len();
            self.zero_counters(table, chain.rules.len() as u32)?;
        }
        // What the generation held before and holds no more.
        let old = std::mem::replace(&mut self.keys[generation as usize], keys);
        for key in old
            .ifaces
            .difference(&self.keys[generation as usize].ifaces)
        {
            ignore_missing(self.ifaces.remove(key)).map_err(map_err("FW_IFACES"))?;
        }
        let stale: Vec<(u8, IpNet)> = old
            .prefixes
            .difference(&self.keys[generation as usize].prefixes)
            .copied()
            .collect();
        for (tag, net) in stale {
            self.remove_prefix(tag, net)?;
            stats.prefixes_removed += 1;
        }
        // Last: the chain headers of the inactive generation.
        for chain in &compiled.chains {
            let table = generation * FW_CHAINS + chain.chain.index();
            self.chain_info
                .set(table, chain.info, 0)
                .map_err(map_err("FW_CHAIN_INFO"))?;
        }
        Ok(stats)
    }

    /// Make `generation` the one packets see: one 4-byte field of one array
    /// entry, so every packet sees either the old ruleset or the new.
    pub fn flip(&mut self, generation: u32) -> Result<(), DataplaneError> {
        let mut config = self.config()?;
        config.fw_generation = generation;
        self.set_config(&config)
    }

    fn set_prefix(&mut self, tag: u8, net: IpNet, id: u32) -> Result<(), DataplaneError> {
        match net {
            IpNet::V4(_) => self
                .prefixes_v4
                .insert(&prefix_key_v4(tag, net), id, 0)
                .map_err(map_err("FW_PREFIXES_V4")),
            IpNet::V6(_) => self
                .prefixes_v6
                .insert(&prefix_key_v6(tag, net), id, 0)
                .map_err(map_err("FW_PREFIXES_V6")),
        }
    }

    fn remove_prefix(&mut self, tag: u8, net: IpNet) -> Result<(), DataplaneError> {
        match net {
            IpNet::V4(_) => ignore_missing(self.prefixes_v4.remove(&prefix_key_v4(tag, net)))
                .map_err(map_err("FW_PREFIXES_V4")),
            IpNet::V6(_) => ignore_missing(self.prefixes_v6.remove(&prefix_key_v6(tag, net)))
                .map_err(map_err("FW_PREFIXES_V6")),
        }
    }

    /// Zero the counters of positions `0..rules` and the policy of `table`.
    fn zero_counters(&mut self, table: u32, rules: u32) -> Result<(), DataplaneError> {
        let cpus = nr_cpus().map_err(|(_, e)| DataplaneError::Cpus(e))?;
        let base = table * FW_COUNTERS_PER_TABLE;
        for index in (base..base + rules).chain([base + FW_MAX_RULES]) {
            let zero = PerCpuValues::try_from(vec![Counter::default(); cpus])
                .map_err(DataplaneError::Cpus)?;
            self.counters
                .set(index, zero, 0)
                .map_err(map_err("FW_COUNTERS"))?;
        }
        Ok(())
    }

    /// Counters of `position` (FW_MAX_RULES: the policy) in `table`,
    /// summed over CPUs.
    pub fn rule_counter(&self, table: u32, position: u32) -> Result<Count, DataplaneError> {
        let values = self
            .counters
            .get(&(table * FW_COUNTERS_PER_TABLE + position), 0)
            .map_err(map_err("FW_COUNTERS"))?;
        Ok(values.iter().fold(Count::default(), |mut acc, c| {
            acc.packets += c.packets;
            acc.bytes += c.bytes;
            acc
        }))
    }

    /// The chain header of `table` as installed.
    pub fn chain_info(&self, table: u32) -> Result<ChainInfo, DataplaneError> {
        self.chain_info
            .get(&table, 0)
            .map_err(map_err("FW_CHAIN_INFO"))
    }

    /// The action and id at `position` of `table`, as installed.
    pub fn rule_at(&self, table: u32, position: u32) -> FwRule {
        self.rules.read(table * FW_MAX_RULES + position)
    }

    /// Set the connection timeouts (seconds per `CT_*` state) and flags.
    pub fn set_conntrack(
        &mut self,
        timeouts: [u32; CT_TIMEOUTS],
        flags: u32,
    ) -> Result<(), DataplaneError> {
        let mut config = self.config()?;
        config.ct_timeouts = timeouts;
        config.flags = flags;
        self.set_config(&config)
    }

    /// The connection table.
    pub fn conntrack(&self) -> &HashMap<MapData, CtKey, CtEntry> {
        &self.conntrack
    }

    pub fn conntrack_mut(&mut self) -> &mut HashMap<MapData, CtKey, CtEntry> {
        &mut self.conntrack
    }

    /// Capacity of the connection table.
    pub fn conntrack_capacity(&self) -> u32 {
        self.conntrack_capacity
    }

    /// A handle of its own on the connection table (flow export reads it
    /// without holding the dataplane lock).
    pub fn conntrack_reader(&self) -> Result<HashMap<MapData, CtKey, CtEntry>, DataplaneError> {
        let fd = self
            .conntrack_fd
            .try_clone()
            .map_err(|e| DataplaneError::Dup("CONNTRACK", e))?;
        let data = MapData::from_fd(fd).map_err(map_err("CONNTRACK"))?;
        Map::LruHashMap(data)
            .try_into()
            .map_err(map_err("CONNTRACK"))
    }
}

/// A second descriptor of a map.
pub(super) fn dup_fd(data: &MapData) -> Result<std::os::fd::OwnedFd, DataplaneError> {
    use std::os::fd::AsFd as _;
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| DataplaneError::Dup("map", e))
}

/// LPM key of an IPv4 prefix of the (table, side) `tag`: the tag byte, then
/// the address; the length counts the tag's 8 bits.
fn prefix_key_v4(tag: u8, net: IpNet) -> Key<FwPrefixV4> {
    let mut data = [0u8; 8];
    data[0] = tag;
    if let IpAddr::V4(a) = net.network() {
        data[1..5].copy_from_slice(&a.octets());
    }
    Key::new(8 + u32::from(net.prefix_len()), data)
}

/// [`prefix_key_v4`] for IPv6.
fn prefix_key_v6(tag: u8, net: IpNet) -> Key<FwPrefixV6> {
    let mut data = [0u8; 20];
    data[0] = tag;
    if let IpAddr::V6(a) = net.network() {
        data[1..17].copy_from_slice(&a.octets());
    }
    Key::new(8 + u32::from(net.prefix_len()), data)
}
