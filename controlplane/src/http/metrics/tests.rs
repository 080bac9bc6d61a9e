//! The exposition parsed back by a small checker of the 0.0.4 text format:
//! every line is a HELP, a TYPE or a sample of the grammar; every family
//! has one HELP and one TYPE before its samples, and its samples are
//! contiguous; no series (name and label set) appears twice.
use std::collections::{BTreeMap, BTreeSet};

use dataplane_common::MAX_ROUTES_V4;

use super::*;

/// One sample: name, labels (unescaped), value.
type Sample = (String, BTreeMap<String, String>, f64);

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{a="x",b="y"}` at the start of `s`: the labels and the rest.
#[track_caller]
fn parse_labels(line: &str, s: &str) -> (BTreeMap<String, String>, String) {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    assert_eq!(chars.next(), Some('{'), "{line}");
    loop {
        if chars.peek() == Some(&'}') {
            chars.next();
            break;
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(is_label_name(&name), "label name {name:?} in {line}");
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        loop {
            match chars
                .next()
                .unwrap_or_else(|| panic!("unterminated value: {line}"))
            {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape \\{other:?} in {line}"),
                },
                '\n' => panic!("raw line feed in a label value: {line}"),
                c => value.push(c),
            }
        }
        assert!(
            labels.insert(name.clone(), value).is_none(),
            "label {name} twice in {line}"
        );
        match chars.next() {
            Some(',') => {}
            Some('}') => break,
            other => panic!("expected , or }} after a label, got {other:?}: {line}"),
        }
    }
    (labels, chars.collect())
}

fn parse_value(line: &str, s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        s => s
            .parse()
            .unwrap_or_else(|_| panic!("value {s:?} is not a float: {line}")),
    }
}

/// Check `text` against the format; returns its samples and each family's
/// type.
#[track_caller]
fn check(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut closed = BTreeSet::new();
    let mut series = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_metric_name(name), "{line}");
            assert!(help.insert(name.to_owned()), "HELP twice: {line}");
            assert!(!closed.contains(name), "family {name} split: {line}");
            if let Some(c) = current.replace(name.to_owned())
                && c != name
            {
                closed.insert(c);
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(is_metric_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert_eq!(
                current.as_deref(),
                Some(name),
                "TYPE after its HELP: {line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
        } else if line.starts_with('#') || line.is_empty() {
            panic!("unexpected line {line:?}");
        } else {
            let end = line.find(['{', ' ']).expect("sample has a value");
            let name = &line[..end];
            assert!(is_metric_name(name), "{line}");
            let (labels, rest) = if line[end..].starts_with('{') {
                parse_labels(line, &line[end..])
            } else {
                (BTreeMap::new(), line[end..].to_owned())
            };
            let value = rest.strip_prefix(' ').expect("one space before the value");
            assert!(!value.contains(' '), "no timestamps here: {line}");
            let value = parse_value(line, value);
            assert_eq!(
                current.as_deref(),
                Some(name),
                "sample outside its family: {line}"
            );
            assert!(types.contains_key(name), "sample before TYPE: {line}");
            if types[name] == "counter" {
                assert!(name.ends_with("_total"), "counter name: {line}");
                assert!(value >= 0.0, "negative counter: {line}");
            }
            let key = format!("{name}{labels:?}");
            assert!(series.insert(key), "duplicate series: {line}");
            samples.push((name.to_owned(), labels, value));
        }
    }
    assert_eq!(help.len(), types.len(), "every family has HELP and TYPE");
    (samples, types)
}

fn count(packets: u64, bytes: u64) -> Count {
    Count { packets, bytes }
}

fn synthetic() -> Snapshot {
    let mut counters = SlotCounters::default();
    counters
        .reasons
        .insert(Reason::Forwarded.name(), count(10, 1500));
    let odd = "we\"ird\\na\nme".to_owned();
    Snapshot {
        interfaces: vec![
            IfaceMetrics {
                name: "eth1".into(),
                attached: true,
                counters: Some(counters.clone()),
            },
            IfaceMetrics {
                name: odd,
                attached: false,
                counters: Some(counters),
            },
            IfaceMetrics {
                name: "gone0".into(),
                attached: false,
                counters: None,
            },
        ],
        rules: vec![RuleMetrics {
            chain: "forward",
            position: 1,
            rule_id: 7,
            action: "drop",
            count: count(3, 180),
        }],
        policies: vec![
            ("forward", "accept", count(1, 60)),
            ("input", "drop", count(0, 0)),
        ],
        firewall_commit: Some(12),
        firewall_generation: 1,
        conntrack_entries: 5,
        conntrack_capacity: 262_144,
        maps: vec![("routes_v4", 3, u64::from(MAX_ROUTES_V4))],
        sync: SyncStatus {
            enabled: true,
            in_sync: true,
            snapshots: 1,
            last_snapshot_ms: Some(1500),
            ..SyncStatus::default()
        },
        ..Snapshot::default()
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == want)
        .unwrap_or_else(|| panic!("no sample {name}{want:?}"))
        .2
}

#[test]
fn exposition_parses_back_with_escaped_labels() {
    let text = render(&synthetic());
    let (samples, types) = check(&text);
    assert_eq!(types["xdpgate_packets_total"], "counter");
    assert_eq!(types["xdpgate_conntrack_entries"], "gauge");
    assert_eq!(
        value(
            &samples,
            "xdpgate_packets_total",
            &[
                ("iface", "eth1"),
                ("reason", "forwarded"),
                ("action", "redirect")
            ]
        ),
        10.0
    );
    assert_eq!(
        value(
            &samples,
            "xdpgate_bytes_total",
            &[
                ("iface", "eth1"),
                ("reason", "forwarded"),
                ("action", "redirect")
            ]
        ),
        1500.0
    );
    // The odd name round-trips through the escaping.
    assert_eq!(
        value(
            &samples,
            "xdpgate_interface_attached",
            &[("iface", "we\"ird\\na\nme")]
        ),
        0.0
    );
    assert!(text.contains(r#"iface="we\"ird\\na\nme""#), "{text}");
    // Every reason and class of a managed interface, none of an absent one.
    let per_iface = samples
        .iter()
        .filter(|(n, l, _)| n == "xdpgate_packets_total" && l["iface"] == "eth1")
        .count();
    assert_eq!(per_iface, Reason::COUNT as usize);
    assert!(
        !samples
            .iter()
            .any(|(n, l, _)| n == "xdpgate_packets_total" && l["iface"] == "gone0")
    );
    assert_eq!(
        value(
            &samples,
            "xdpgate_firewall_rule_packets_total",
            &[
                ("chain", "forward"),
                ("position", "1"),
                ("rule_id", "7"),
                ("action", "drop")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "xdpgate_firewall_policy_bytes_total",
            &[("chain", "forward"), ("action", "accept")]
        ),
        60.0
    );
    assert_eq!(value(&samples, "xdpgate_firewall_active_commit", &[]), 12.0);
    assert_eq!(value(&samples, "xdpgate_kernel_sync_in_sync", &[]), 1.0);
    assert_eq!(
        value(&samples, "xdpgate_kernel_sync_last_snapshot_seconds", &[]),
        1.5
    );
    assert_eq!(
        value(&samples, "xdpgate_map_capacity", &[("map", "routes_v4")]),
        f64::from(MAX_ROUTES_V4)
    );
    assert_eq!(
        value(
            &samples,
            "xdpgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[test]
fn an_empty_snapshot_still_declares_every_family() {
    let (samples, types) = check(&render(&Snapshot::default()));
    for family in [
        "xdpgate_packets_total",
        "xdpgate_firewall_rule_packets_total",
        "xdpgate_firewall_active_commit",
        "xdpgate_kernel_sync_last_snapshot_seconds",
    ] {
        assert!(types.contains_key(family), "{family}");
    }
    assert!(
        !samples
            .iter()
            .any(|(n, _, _)| n == "xdpgate_firewall_active_commit")
    );
}

#[test]
fn export_outbox_and_event_counters_are_exposed() {
    let snap = Snapshot {
        export: Some(crate::flowexport::ExportCounters {
            records_queued: 40,
            records_dropped: 2,
            messages: 5,
            scans: 9,
            flows: 3,
            last_scan_us: 2500,
            scan_errors: 1,
            datagrams: Default::default(),
            io_backend: "poll".into(),
        }),
        outbox: vec![
            (
                "ipfix",
                crate::outbox::ClassCounts {
                    sent: 5,
                    bytes: 700,
                    dropped: 4,
                    send_errors: 6,
                },
            ),
            ("syslog", Default::default()),
        ],
        events: Some((11, 0)),
        drop_log: Some(crate::firewall_log::DropLogStats {
            records: 9,
            emitted: 7,
            suppressed: 2,
            kernel_written: 9,
            kernel_lost: 3,
            ..Default::default()
        }),
        ..Snapshot::default()
    };
    let (samples, types) = check(&render(&snap));
    assert_eq!(types["xdpgate_export_records_total"], "counter");
    assert_eq!(types["xdpgate_export_flows"], "gauge");
    let v = |n, l: &[(&str, &str)]| value(&samples, n, l);
    assert_eq!(
        v("xdpgate_export_records_total", &[("result", "queued")]),
        40.0
    );
    assert_eq!(
        v("xdpgate_export_records_total", &[("result", "dropped")]),
        2.0
    );
    assert_eq!(v("xdpgate_export_last_scan_seconds", &[]), 0.0025);
    let d = "xdpgate_outbox_datagrams_total";
    assert_eq!(v(d, &[("class", "ipfix"), ("result", "sent")]), 5.0);
    assert_eq!(v(d, &[("class", "ipfix"), ("result", "dropped")]), 4.0);
    assert_eq!(v(d, &[("class", "ipfix"), ("result", "send_error")]), 6.0);
    assert_eq!(v(d, &[("class", "syslog"), ("result", "sent")]), 0.0);
    assert_eq!(
        v("xdpgate_outbox_bytes_total", &[("class", "ipfix")]),
        700.0
    );
    assert_eq!(v("xdpgate_events_total", &[]), 11.0);
    let fl = "xdpgate_firewall_log_packets_total";
    assert_eq!(v(fl, &[("result", "lost")]), 3.0);
    let fr = "xdpgate_firewall_log_records_total";
    assert_eq!(v(fr, &[("result", "suppressed")]), 2.0);
    // Without an exporter none of it appears.
    let (samples, _) = check(&render(&Snapshot::default()));
    assert!(
        !samples
            .iter()
            .any(|(n, _, _)| n.starts_with("xdpgate_export"))
    );
}

#[test]
#[should_panic(expected = "duplicate series")]
fn the_checker_refuses_a_duplicate_series() {
    check("# HELP a_total x\n# TYPE a_total counter\na_total{l=\"1\"} 1\na_total{l=\"1\"} 2\n");
}

#[test]
#[should_panic(expected = "bad escape")]
fn the_checker_refuses_a_bad_escape() {
    check("# HELP a x\n# TYPE a gauge\na{l=\"\\t\"} 1\n");
}

#[test]
#[should_panic(expected = "sample before TYPE")]
fn the_checker_refuses_a_sample_without_type() {
    check("# HELP a x\na 1\n");
}

/// The live endpoint on a freshly loaded dataplane (needs root).
#[sqlx::test(migrations = "../migrations")]
async fn get_metrics_serves_the_format_from_a_loaded_dataplane(db: sqlx::SqlitePool) {
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let dataplane = std::sync::Arc::new(Mutex::new(
        Dataplane::load().expect("load the XDP object (needs root)"),
    ));
    let firewall = crate::firewall::Firewall::new(db.clone(), dataplane.clone());
    let state = AppState {
        dataplane,
        db,
        sync: tokio::sync::watch::channel(SyncStatus::default()).1,
        firewall: std::sync::Arc::new(tokio::sync::Mutex::new(firewall)),
        wanted: crate::managed::Wanted::new(["absent0".to_owned()], Default::default()),
        listener_is_loopback: true,
        export: None,
        drop_log: None,
    };
    let resp = super::super::app(state)
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], CONTENT_TYPE);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    let (samples, _) = check(&text);
    assert_eq!(
        value(&samples, "xdpgate_conntrack_capacity", &[]),
        f64::from(dataplane_common::CT_DEFAULT_MAX)
    );
    assert_eq!(value(&samples, "xdpgate_conntrack_entries", &[]), 0.0);
    assert_eq!(
        value(
            &samples,
            "xdpgate_interface_attached",
            &[("iface", "absent0")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "xdpgate_firewall_policy_packets_total",
            &[("chain", "input"), ("action", "accept")]
        ),
        0.0
    );
    assert_eq!(value(&samples, "xdpgate_kernel_sync_enabled", &[]), 0.0);
}
