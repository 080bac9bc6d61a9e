//! The xdpgate XDP program: attached to every managed interface.
//!
//! Path of a frame: `parse` classifies it, `decide` picks a [`Reason`], and
//! `finish` counts it and turns the reason into the XDP verdict. `finish` is
//! the only exit, so no frame leaves uncounted.
#![no_std]
#![no_main]

mod headers;
mod maps;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use dataplane_common::Reason;

use crate::parse::Packet;

#[xdp]
pub fn xdpgate(ctx: XdpContext) -> u32 {
    let slot = stats::iface_slot(&ctx);
    let reason = decide(&ctx, slot);
    finish(&ctx, slot, reason)
}

/// Why this frame gets the verdict it gets. Malformed frames are dropped;
/// everything the fast path does not decide is punted to the kernel.
#[inline(always)]
fn decide(ctx: &XdpContext, slot: u32) -> Reason {
    let packet: Packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(reason) => return reason,
    };
    stats::count_class(ctx, slot, packet.class);
    match packet.exception {
        Some(reason) => reason,
        None => Reason::NotForwarded,
    }
}

/// The single exit: bump the per-CPU counters, return the verdict.
#[inline(always)]
fn finish(ctx: &XdpContext, slot: u32, reason: Reason) -> u32 {
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
