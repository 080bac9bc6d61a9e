//! The xdpgate XDP program: attached to every managed interface.
//!
//! Path of a frame: `parse` classifies it, `decide` picks a [`Reason`], and
//! `finish` counts it and turns the reason into the XDP verdict. `finish` is
//! the only exit, so no frame leaves uncounted.
#![no_std]
#![no_main]

mod conntrack;
mod firewall;
mod forward;
mod fwlog;
mod headers;
mod maps;
mod parse;
mod reject;
mod rewrite;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use dataplane_common::{Class, Reason};
use maps::SCRATCH;

#[xdp]
pub fn xdpgate(ctx: XdpContext) -> u32 {
    let (slot, reason, class) = decide(&ctx);
    finish(&ctx, slot, reason, class)
}

/// Why this frame gets the verdict it gets, and the counter slot and traffic
/// class it is counted under. Malformed frames are dropped; frames the fast
/// path must not decide are punted to the kernel with their reason; routed
/// frames go through the firewall between routing and delivery.
#[inline(always)]
fn decide(ctx: &XdpContext) -> (u32, Reason, Option<Class>) {
    let (port, port_info) = stats::port(ctx);
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(reason) => return (port_info.counter_slot, reason, None),
    };
    let class = Some(packet.class);
    let then = match packet.exception {
        None => Reason::Forwarded,
        // The kernel would route these: they go through the firewall.
        Some(r @ (Reason::Ipv4Options | Reason::Fragment | Reason::Ipv6ExtHeader)) => r,
        Some(reason) => return (port_info.counter_slot, reason, class),
    };
    // Routing and firewall state lives in a per-CPU map entry, not on the
    // stack (the verifier's 512 bytes cover the whole call chain).
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return (port_info.counter_slot, Reason::NotForwarded, class);
    };
    // SAFETY: this CPU's entry; XDP runs with preemption disabled.
    let s = unsafe { &mut *scratch };
    s.plan.slot = port_info.counter_slot;
    s.plan.port = port;
    s.plan.in_ifindex = port;
    s.plan.then = then;
    if let Err(reason) = forward::route(ctx, &packet, s) {
        // A packet for the kernel that XDP would not route anyway keeps
        // its own reason: the firewall only changes what the kernel gets.
        let reason = if then == Reason::Forwarded {
            reason
        } else {
            then
        };
        return (s.plan.slot, reason, class);
    }
    let mut entry = core::ptr::null_mut();
    match firewall::begin(ctx, &packet, s, &mut entry) {
        Ok(true) => {
            let position = firewall::classify(s);
            if let Err(reason) = firewall::verdict(ctx, &packet, s, entry, position) {
                return (s.plan.slot, reason, class);
            }
        }
        Ok(false) => {}
        Err(reason) => return (s.plan.slot, reason, class),
    }
    if s.plan.then != Reason::Forwarded {
        return (s.plan.slot, s.plan.then, class);
    }
    (s.plan.slot, forward::deliver(ctx, &packet, s), class)
}

/// The single exit: bump the per-CPU counters, return the verdict. The
/// frame length is read here, after any rewrite.
#[inline(always)]
fn finish(ctx: &XdpContext, slot: u32, reason: Reason, class: Option<Class>) -> u32 {
    if let Some(class) = class {
        stats::count_class(ctx, slot, class);
    }
    stats::count_reason(ctx, slot, reason);
    reason.action() as u32
}

/// Minimal program for the far end of a veth that xdpgate redirects into.
/// A veth delivers redirected frames only if its peer runs XDP (or has GRO
/// on); see drivers/net/veth.c veth_xdp_xmit() and ../shared/NOTES.md.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The floor for benchmarks: the least an XDP forwarder can do (bounce the
/// frame back out). Never attached by the daemon.
#[xdp]
pub fn xdp_tx_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Benchmark sink for the receiving veth: count (per CPU) and drop.
#[xdp]
pub fn xdp_sink(ctx: XdpContext) -> u32 {
    stats::count_sink(&ctx);
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
