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
    // The eBPF crate gets the same layout as the userspace types.
    let features: &[&str] = if std::env::var_os("CARGO_FEATURE_LAYOUT_TEST").is_some() {
        &["layout-test"]
    } else {
        &[]
    };
    // sqlx::migrate! embeds ../migrations; a new file there must rebuild
    // the crate (the sqlx docs' `sqlx migrate build-script`).
    println!("cargo:rerun-if-changed=../migrations");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "dataplane-ebpf",
            root_dir: ebpf_dir,
            features,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the XDP program (needs nightly with rust-src and bpf-linker; run scripts/setup)",
    )
}
