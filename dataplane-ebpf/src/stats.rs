//! Per-CPU counters. No shared-map writes on the hot path: each CPU has its
//! own cell, and the control plane sums them.
use aya_ebpf::programs::XdpContext;
use dataplane_common::{Class, Counter, IfaceInfo, Reason, class_index, reason_index};

use crate::maps::{CLASS_COUNTERS, IFACES, REASON_COUNTERS, SINK_COUNTER};

/// The ingress port and what the control plane registered for it. An
/// unregistered port gets slot 0 and no flags: counted, never routed.
#[inline(always)]
pub fn port(ctx: &XdpContext) -> (u32, IfaceInfo) {
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    // SAFETY: the value is copied out at once.
    match unsafe { IFACES.get(ifindex) } {
        Some(info) => (ifindex, *info),
        None => (ifindex, IfaceInfo::default()),
    }
}

#[inline(always)]
fn frame_len(ctx: &XdpContext) -> u64 {
    crate::parse::len(ctx) as u64
}

#[inline(always)]
fn bump(cell: Option<*mut Counter>, len: u64) {
    if let Some(cell) = cell {
        // SAFETY: a per-CPU value; this CPU is its only writer while the
        // program runs (XDP runs with preemption disabled).
        unsafe {
            (*cell).packets += 1;
            (*cell).bytes += len;
        }
    }
}

#[inline(always)]
pub fn count_reason(ctx: &XdpContext, slot: u32, reason: Reason) {
    bump(
        REASON_COUNTERS.get_ptr_mut(reason_index(slot, reason)),
        frame_len(ctx),
    );
}

#[inline(always)]
pub fn count_class(ctx: &XdpContext, slot: u32, class: Class) {
    bump(
        CLASS_COUNTERS.get_ptr_mut(class_index(slot, class)),
        frame_len(ctx),
    );
}

#[inline(always)]
pub fn count_sink(ctx: &XdpContext) {
    bump(SINK_COUNTER.get_ptr_mut(0), frame_len(ctx));
}
