//! Kernel sync benchmarks (being written).
fn main() {}
