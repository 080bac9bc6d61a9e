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
    let mut out = vec![0u8; frame.len() + OUTPUT_SLACK];
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
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
