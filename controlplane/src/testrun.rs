//! `BPF_PROG_TEST_RUN` on the loaded (not attached) program: run it on a
//! crafted frame and get the verdict, the frame as the program left it, and
//! the kernel's own per-run duration. Test-run mode has no side effects: a
//! REDIRECT is reported, not performed (net/bpf/test_run.c).
//!
//! The kernel runs the frame as if received on the namespace's loopback
//! device (ifindex 1) unless a context names another.
use std::time::Duration;

use aya::programs::{ProgramError, TestRun as _, TestRunOptions, Xdp};
use dataplane_common::Action;

/// Headroom for frames the program grows (VLAN push, ICMP errors).
const OUTPUT_SLACK: usize = 256;

/// ifindex the kernel uses for a test run without a context: loopback.
pub const TEST_RUN_IFINDEX: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    Syscall(#[from] ProgramError),
    #[error("the program returned {0}, which is not an XDP action")]
    UnknownAction(u32),
}

/// One run's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    /// The frame after the program ran (its edits applied).
    pub output: Vec<u8>,
    /// Kernel-measured duration, averaged over the repeats.
    pub duration: Duration,
}

/// Run `prog` once on `frame`.
pub fn run(prog: &Xdp, frame: &[u8]) -> Result<Outcome, TestRunError> {
    run_repeat(prog, frame, 1)
}

/// Run `prog` `repeat` times on `frame`. The kernel reuses one buffer for all
/// repeats, so edits pile up: frames meant for benchmarks must stay valid
/// after the program edits them (../shared/NOTES.md, Test-run).
pub fn run_repeat(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<Outcome, TestRunError> {
    run_with(prog, frame, repeat, None)
}

/// Run `prog` once on `frame` as if it arrived on `ingress_ifindex` (an
/// interface of the calling thread's namespace; queue 0).
pub fn run_on(prog: &Xdp, frame: &[u8], ingress_ifindex: u32) -> Result<Outcome, TestRunError> {
    run_with(prog, frame, 1, Some(ingress_ifindex))
}

/// `struct xdp_md` (include/uapi/linux/bpf.h) as `ctx_in`: the kernel takes
/// `ingress_ifindex` and `rx_queue_index` from it (net/bpf/test_run.c
/// xdp_convert_md_to_buff). `data` and `data_meta` stay zero (no metadata);
/// `data_end` must be the frame length: bpf_prog_test_run_xdp() takes it as
/// the size of the linear part, and with 0 the whole frame would go into
/// fragments, leaving the program an empty `data..data_end`.
fn xdp_md(ingress_ifindex: u32, frame_len: usize) -> [u8; 24] {
    let mut md = [0u8; 24];
    let data_end = u32::try_from(frame_len).unwrap_or(u32::MAX);
    md[4..8].copy_from_slice(&data_end.to_ne_bytes());
    md[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    md
}

/// The general form: `repeat` runs, optionally on a given ingress interface.
pub fn run_with(
    prog: &Xdp,
    frame: &[u8],
    repeat: u32,
    ingress_ifindex: Option<u32>,
) -> Result<Outcome, TestRunError> {
    let mut out = vec![0u8; frame.len() + OUTPUT_SLACK];
    let md = ingress_ifindex.map(|i| xdp_md(i, frame.len()));
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: md.as_ref().map(|m| m.as_slice()),
        repeat: repeat.max(1),
        ..Default::default()
    })?;
    out.truncate(result.data_size_out as usize);
    let action = Action::from_u32(result.return_value)
        .ok_or(TestRunError::UnknownAction(result.return_value))?;
    Ok(Outcome {
        action,
        output: out,
        duration: result.duration,
    })
}
