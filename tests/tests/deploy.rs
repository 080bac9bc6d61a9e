//! The deployment files in `deploy/`: the example config passes
//! `xdpgate config check`, the systemd unit passes `systemd-analyze verify`
//! without a warning, and the Kubernetes manifests pass kubernetes-validate
//! (strict, against one Kubernetes version's schemas; scripts/prereqs.sh
//! installs it). The image is tested in `image.rs`.
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

/// The Kubernetes release whose schemas the manifests must satisfy
/// (kubernetes-validate bundles 1.25 to 1.37).
const K8S_VERSION: &str = "1.33.0";

/// kubernetes-validate from the venv scripts/prereqs.sh installs it into,
/// at the version pinned there.
#[track_caller]
fn kubernetes_validate() -> PathBuf {
    let script = std::fs::read_to_string(deploy().join("../scripts/prereqs.sh"))
        .expect("read scripts/prereqs.sh");
    let pinned = script
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VALIDATE_VERSION="))
        .expect("KUBERNETES_VALIDATE_VERSION= in scripts/prereqs.sh")
        .trim();
    let bin = PathBuf::from("/opt/xdpgate-venv/bin/kubernetes-validate");
    let out = Command::new(&bin).arg("--version").output();
    let version = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    assert!(
        version.as_deref().is_ok_and(|v| v == pinned),
        "{} {pinned} is missing ({version:?}): run scripts/prereqs.sh (scripts/test does)",
        bin.display()
    );
    bin
}

/// `kubernetes-validate --strict` on `files`: success and its output.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", K8S_VERSION])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn k8s_manifests_pass_kubernetes_validate() {
    let k8s = deploy().join("k8s");
    // What a schema cannot know: the pieces that must agree.
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

    let mut files: Vec<PathBuf> = std::fs::read_dir(&k8s)
        .expect("read deploy/k8s")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
    // A kind it has no schema for (a CRD's) is only a WARN with exit 0:
    // every document must really have been checked.
    assert!(!text.contains("WARN"), "{text}");
    for f in &files {
        assert!(
            text.contains(&format!("{} passed", f.display())),
            "{} not validated:\n{text}",
            f.display()
        );
    }

    // The validator refuses what it should, so the pass above means
    // something: an unknown (misspelled) field and a wrong type.
    let dir = std::env::temp_dir().join(format!("xdpgate-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (
            "hostNetwork: true",
            "hostNetwrok: true",
            "'hostNetwrok' was unexpected",
        ),
        (
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: \"30s\"",
            "is not of type 'integer'",
        ),
    ];
    let mut results = Vec::new();
    for (i, (from, to, _)) in cases.iter().enumerate() {
        assert!(ds.contains(from), "daemonset.yaml lacks {from:?}");
        let bad = dir.join(format!("bad{i}.yaml"));
        std::fs::write(&bad, ds.replacen(from, to, 1)).expect("write bad daemonset");
        results.push(validate(&[bad]));
    }
    let _ = std::fs::remove_dir_all(&dir);
    for ((_, to, why), (ok, text)) in cases.iter().zip(results) {
        assert!(!ok, "a DaemonSet with {to:?} passed:\n{text}");
        assert!(text.contains(why), "{to:?}: {text}");
    }
}
