//! Shared helpers for the workspace integration tests (`tests/tests/*.rs`):
//! a packet builder for `BPF_PROG_TEST_RUN` fixtures and lab support.
pub mod benchutil;
pub mod fibtest;
pub mod frames;
pub mod rng;
pub mod support;
pub mod traffic;
