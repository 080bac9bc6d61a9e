//! Builds the XDP program with aya-build (nightly, bpfel-unknown-none,
//! build-std=core, bpf-linker) and leaves the object in $OUT_DIR/xdpgate,
//! where `dataplane::OBJECT` embeds it.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&metadata_dir)
        .parent()
        .ok_or_else(|| anyhow!("controlplane has no parent directory"))?
        .join("dataplane-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "dataplane-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the XDP program (needs nightly with rust-src and bpf-linker; run scripts/setup)",
    )
}
