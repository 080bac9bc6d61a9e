//! Frame edits on the forward path: TTL / hop limit, MACs, VLAN tags.
//! Pointers are re-derived after `bpf_xdp_adjust_head`, which invalidates
//! every earlier packet pointer (the verifier enforces it).
use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use dataplane_common::{IfaceInfo, Reason};

use crate::{
    headers::{ETH_P_8021Q, Ipv4Hdr, Ipv6Hdr},
    parse::ptr_at,
};

/// 1 normally; a benchmark build sets it to 0 at load time
/// (`EbpfLoader::set_global`) so a frame replayed a million times by
/// `BPF_PROG_TEST_RUN` keeps its TTL. The checksum update runs either way.
#[unsafe(no_mangle)]
static TTL_DEC: u8 = 1;

#[inline(always)]
fn ptr_mut<T>(ctx: &XdpContext, off: usize) -> Result<*mut T, Reason> {
    ptr_at::<T>(ctx, off).map(|p| p as *mut T)
}

/// Decrement the TTL (IPv4, with the incremental checksum update of
/// RFC 1624 eqn. 3, as include/net/ip.h ip_decrease_ttl() does) or the hop
/// limit (IPv6, which has no header checksum).
#[inline(always)]
pub fn decrement_ttl(ctx: &XdpContext, family: u8, off: usize) -> Result<(), Reason> {
    // SAFETY: a load-time constant.
    let dec = unsafe { core::ptr::read_volatile(&TTL_DEC) };
    if family == 4 {
        let ip: *mut Ipv4Hdr = ptr_mut(ctx, off)?;
        unsafe {
            let old = u16::from_be_bytes([(*ip).ttl, (*ip).protocol]);
            let ttl = (*ip).ttl - dec;
            let new = u16::from_be_bytes([ttl, (*ip).protocol]);
            let check = u16::from_be_bytes((*ip).check);
            (*ip).ttl = ttl;
            (*ip).check = csum_replace(check, old, new).to_be_bytes();
        }
    } else {
        let ip: *mut Ipv6Hdr = ptr_mut(ctx, off)?;
        unsafe { (*ip).hop_limit -= dec };
    }
    Ok(())
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), in one's-complement arithmetic.
#[inline(always)]
pub fn csum_replace(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Write the Ethernet header for the egress interface: destination and
/// source MAC, and the 802.1Q tag the egress needs (push, pop, rewrite or
/// none). `in_tags` is the number of tags the frame arrived with (0 or 1).
/// Returns the offset of the L3 header afterwards. Runs before the L3
/// edits, so a push that finds no headroom leaves the frame untouched.
#[inline(always)]
pub fn l2(
    ctx: &XdpContext,
    in_tags: usize,
    dst: &[u8; 6],
    egress: &IfaceInfo,
) -> Result<usize, Reason> {
    let out_tagged = egress.vlan_id != 0;
    l2_tags(ctx, in_tags, out_tagged, dst, egress)?;
    Ok(if out_tagged { 18 } else { 14 })
}

#[inline(always)]
fn l2_tags(
    ctx: &XdpContext,
    in_tags: usize,
    out_tagged: bool,
    dst: &[u8; 6],
    egress: &IfaceInfo,
) -> Result<(), Reason> {
    match (in_tags, out_tagged) {
        (0, false) => write_macs(ctx, 0, dst, &egress.mac),
        (1, true) => {
            write_macs(ctx, 0, dst, &egress.mac)?;
            let tci: *mut [u8; 2] = ptr_mut(ctx, 14)?;
            // Keep priority and DEI, replace the VLAN id.
            unsafe {
                let old = u16::from_be_bytes(*tci);
                *tci = ((old & 0xf000) | egress.vlan_id as u16).to_be_bytes();
            }
            Ok(())
        }
        (1, false) => {
            // Pop: the inner EtherType already sits at bytes 16..18, so the
            // new header is the MACs at 4..16; then drop the first 4 bytes.
            write_macs(ctx, 4, dst, &egress.mac)?;
            adjust_head(ctx, 4)
        }
        (0, true) => {
            // Push: grow by 4; the old EtherType moves to bytes 16..18.
            adjust_head(ctx, -4)?;
            write_macs(ctx, 0, dst, &egress.mac)?;
            let tag: *mut [u8; 4] = ptr_mut(ctx, 12)?;
            let tci = (egress.vlan_id as u16).to_be_bytes();
            let tpid = ETH_P_8021Q.to_be_bytes();
            unsafe { *tag = [tpid[0], tpid[1], tci[0], tci[1]] };
            Ok(())
        }
        _ => Err(Reason::VlanTooDeep),
    }
}

#[inline(always)]
fn write_macs(ctx: &XdpContext, off: usize, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), Reason> {
    let macs: *mut [u8; 12] = ptr_mut(ctx, off)?;
    unsafe {
        *macs = [
            dst[0], dst[1], dst[2], dst[3], dst[4], dst[5], src[0], src[1], src[2], src[3], src[4],
            src[5],
        ];
    }
    Ok(())
}

#[inline(always)]
fn adjust_head(ctx: &XdpContext, delta: i32) -> Result<(), Reason> {
    // SAFETY: the helper checks the new head against the buffer itself.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        // No headroom for a push: let the kernel's VLAN device do it.
        return Err(Reason::EgressUnmanaged);
    }
    Ok(())
}
