//! The API against its own OpenAPI document: schemathesis (installed by
//! scripts/prereqs.sh) generates requests for every operation from
//! `GET /api/v1/openapi.json` of a daemon on the lab router and fails on
//! any 5xx, any status the document does not list for the operation, and
//! any body or content type that does not match it. The examples are
//! bounded and the seed fixed, so a run takes 15-20 s here and a
//! failure reproduces.
//!
//! Nothing is excluded: writes may detach the lab's interfaces, flush the
//! connection table or commit odd rulesets; the lab is thrown away after.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use xdpgate::client;
use xdpgate_tests::support::*;

const VENV: &str = "/opt/xdpgate-venv";
const SEED: &str = "20261125";
/// Per operation and phase: about 15 s here (300 takes a minute and a
/// half and found nothing more).
const MAX_EXAMPLES: &str = "50";

/// The version scripts/prereqs.sh installs.
fn pinned_version() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/prereqs.sh");
    let text = std::fs::read_to_string(&script).expect("read scripts/prereqs.sh");
    text.lines()
        .find_map(|l| l.strip_prefix("SCHEMATHESIS_VERSION="))
        .expect("SCHEMATHESIS_VERSION= in scripts/prereqs.sh")
        .trim()
        .to_owned()
}

#[track_caller]
fn venv_bin(name: &str) -> String {
    let bin = format!("{VENV}/bin/{name}");
    assert!(
        Path::new(&bin).exists(),
        "{bin} is missing: run scripts/prereqs.sh (scripts/test does)"
    );
    bin
}

/// Checks the document against the OpenAPI 3.1 JSON schema (the one
/// schemathesis carries, so no download).
const VALIDATE: &str = r#"
import json, sys
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
doc = json.load(sys.stdin)
errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
          for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
print("\n".join(errors))
sys.exit(1 if errors else 0)
"#;

#[test]
fn the_api_conforms_to_its_openapi_document() {
    let st = venv_bin("schemathesis");
    let version = Command::new(&st)
        .arg("--version")
        .output()
        .expect("schemathesis --version");
    let version = String::from_utf8_lossy(&version.stdout);
    let pinned = pinned_version();
    assert_eq!(
        version.trim(),
        format!("schemathesis, version {pinned}"),
        "not the pinned schemathesis: run scripts/prereqs.sh"
    );

    let lab = lab(false);
    let daemon = Daemon::start_forwarding(&lab.lab, true, &[]);
    let api = daemon.api;
    let doc = client::get_json(api, "/api/v1/openapi.json").expect("GET /api/v1/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");

    let mut check = Command::new(venv_bin("python"))
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    serde_json::to_writer(check.stdin.take().expect("stdin"), &doc).expect("write the document");
    let out = check.wait_with_output().expect("validate");
    assert!(
        out.status.success(),
        "not a valid OpenAPI 3.1 document:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Its working files (the example database, reports) in a directory of
    // its own.
    let work = std::env::temp_dir().join(format!("{}-schemathesis", lab.lab.prefix));
    std::fs::create_dir_all(&work).expect("work dir");
    let out = Command::new(&st)
        .current_dir(&work)
        .args(["run", &format!("http://{api}/api/v1/openapi.json")])
        .args(["--url", &format!("http://{api}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "1", "--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .args(["--no-color", "--output-truncate", "false"])
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let _ = std::fs::remove_dir_all(&work);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems ({}):\n{report}\n--- daemon log ---\n{}",
        out.status,
        daemon.log()
    );
    // The summary, for the test log.
    println!("{report}");
}
