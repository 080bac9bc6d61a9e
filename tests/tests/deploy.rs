//! The deployment files in `deploy/`: the example config passes
//! `xdpgate config check`, the systemd unit passes `systemd-analyze verify`
//! without a warning, and the Kubernetes manifests pass kubeconform (when
//! it is installed; scripts/prereqs.sh installs it where GitHub is
//! reachable).
use std::{path::PathBuf, process::Command};

use xdpgate_tests::support::xdpgate_bin;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn example_config_passes_config_check() {
    let out = Command::new(xdpgate_bin())
        .args(["config", "check"])
        .arg(deploy().join("config.toml"))
        .output()
        .expect("run xdpgate config check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn config_check_names_the_lines_of_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("xdpgate-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "interfaces = [\"eth1\"]\nxdp_mode = \"turbo\"\napi = \"nowhere\"\n",
    )
    .expect("write");
    let out = Command::new(xdpgate_bin())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run xdpgate config check");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("line 2: error: xdp_mode"), "{stdout}");
    assert!(stdout.contains("line 3: error: api"), "{stdout}");
}

#[test]
fn systemd_unit_verifies_cleanly() {
    if !have("systemd-analyze") {
        eprintln!("SKIP: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    // A copy whose ExecStart names the binary just built, so the check
    // does not depend on /usr/local/bin.
    let unit = std::fs::read_to_string(deploy().join("xdpgate.service")).expect("read unit");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/xdpgate run --config /etc/xdpgate/config.toml")
    );
    let unit = unit.replace(
        "/usr/local/bin/xdpgate",
        &xdpgate_bin().display().to_string(),
    );
    let dir = std::env::temp_dir().join(format!("xdpgate-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("xdpgate.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let about_unit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("xdpgate.service"))
        .collect();
    assert!(about_unit.is_empty(), "{text}");
}

#[test]
fn k8s_manifests_pass_kubeconform() {
    let k8s = deploy().join("k8s");
    // What kubeconform cannot know: the pieces that must agree.
    let ds = std::fs::read_to_string(k8s.join("daemonset.yaml")).expect("daemonset");
    for needle in [
        "hostNetwork: true",
        "privileged: false",
        "path: /sys/fs/bpf",
        "path: /healthz",
        "path: /readyz",
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/path: /metrics",
        "name: xdpgate-config",
        "add: [\"BPF\", \"NET_ADMIN\", \"PERFMON\", \"SYS_RESOURCE\"]",
    ] {
        assert!(ds.contains(needle), "daemonset.yaml lacks {needle:?}");
    }
    if !have("kubeconform") {
        eprintln!(
            "SKIP: kubeconform is not installed (scripts/prereqs.sh installs it from its GitHub \
             release when github.com is reachable); manifests not schema-checked"
        );
        return;
    }
    let mut cmd = Command::new("kubeconform");
    cmd.args(["-strict", "-summary"]);
    // Offline: a local copy of the schemas (yannh/kubernetes-json-schema
    // layout); otherwise kubeconform's default, fetched from GitHub.
    if let Some(dir) = std::env::var_os("XDPGATE_K8S_SCHEMAS") {
        let mut loc = dir.into_string().expect("utf-8 schema path");
        loc.push_str(
            "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind \
             }}{{ .KindSuffix }}.json",
        );
        cmd.args(["-schema-location", &loc]);
    }
    let out = cmd.arg(&k8s).output().expect("run kubeconform");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
