//! The firewall's drop log: a packet a logging rule (`FW_RULE_F_LOG`)
//! drops or rejects is copied, as a [`FwLogRecord`] of the fields the rules
//! look at, into the `FW_LOG` ring buffer, for the control plane to rate
//! limit and send to the event log.
//!
//! Sampled here, one in `FwLogConfig::sample` (`bpf_get_prandom_u32`, as
//! nftables' `numgen random` would), so a flood costs a random number and
//! a counter rather than a ring buffer write per packet. A full ring buffer
//! is not waited on (XDP cannot sleep): the record is lost and counted in
//! `FW_LOG_STATS`.
use aya_ebpf::{helpers::bpf_get_prandom_u32, programs::XdpContext};
use dataplane_common::{
    FW_LOG_F_ICMP, FW_LOG_F_PORTS, FW_LOG_F_TCP, FW_LOG_STAT_LOST, FW_LOG_STAT_SAMPLED_OUT,
    FW_LOG_STAT_WRITTEN, FwLogRecord,
};

use crate::{
    firewall::Scratch,
    maps::{FW_LOG, FW_LOG_CONFIG, FW_LOG_STATS},
};

/// Log the packet `s` describes, dropped or rejected (`action`) by rule
/// `rule_id`. Called before a reject rewrites the frame into its reply.
/// A function of its own: its stack frame is not added to the verdict's.
#[inline(never)]
pub fn record(ctx: &XdpContext, s: &Scratch, action: u32, rule_id: u32) {
    let sample = match FW_LOG_CONFIG.get(0) {
        Some(c) => c.sample,
        None => 0,
    };
    // SAFETY: a helper without arguments.
    if sample > 1 && unsafe { bpf_get_prandom_u32() } % sample != 0 {
        bump(FW_LOG_STAT_SAMPLED_OUT);
        return;
    }
    let Some(mut entry) = FW_LOG.reserve::<FwLogRecord>(0) else {
        bump(FW_LOG_STAT_LOST);
        return;
    };
    let v = &s.view;
    let mut flags = 0;
    if v.has_ports {
        flags |= FW_LOG_F_PORTS;
    }
    if v.is_icmp {
        flags |= FW_LOG_F_ICMP;
    }
    if v.is_tcp {
        flags |= FW_LOG_F_TCP;
    }
    let r = entry.as_mut_ptr();
    // SAFETY: `r` points at a reserved, 8-aligned FwLogRecord-sized slot;
    // every field is written before the submit (ring buffer memory is not
    // zeroed, and userspace must not see stale bytes).
    unsafe {
        (*r).rule_id = rule_id;
        (*r).ifindex_in = s.plan.in_ifindex;
        (*r).ifindex_out = s.plan.out_ifindex;
        (*r).len = crate::parse::len(ctx) as u32;
        (*r).chain = s.plan.chain as u8;
        (*r).action = action as u8;
        (*r).family = v.family;
        (*r).proto = v.proto;
        (*r).src = v.src;
        (*r).dst = v.dst;
        (*r).sport = v.sport;
        (*r).dport = v.dport;
        (*r).icmp_type = v.icmp_type;
        (*r).icmp_code = v.icmp_code;
        (*r).tcp_flags = v.tcp_flags;
        (*r).flags = flags;
        (*r)._pad = [0; 4];
    }
    entry.submit(0);
    bump(FW_LOG_STAT_WRITTEN);
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(cell) = FW_LOG_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU; XDP runs with preemption disabled.
        unsafe { *cell += 1 };
    }
}
