use super::*;
use crate::firewall::rule::{AddrMatch, CtState, PortRange, Proto, TcpFlags};

const EXAMPLE: &str = r#"
[policy]
forward = "drop"
input = "accept"

[sets.blocklist]
prefixes = ["198.18.200.0/24", "2001:db8:bad::/48"]
comment = "abusers"

[[rule]]
chain = "forward"
src = "@blocklist"
action = "drop"
comment = "blocklist first"

[[rule]]
chain = "forward"
in = "eth1"
out = "eth2"
src = "198.18.1.0/24"
proto = "tcp"
sport = "1024-65535"
dport = 22
tcp_flags = "syn,!ack"
state = ["new", "established"]
action = "accept"

[[rule]]
chain = "input"
proto = "icmp"
icmp = "echo-request"
action = "accept"
enabled = false
"#;

#[track_caller]
fn problems(text: &str) -> Vec<String> {
    parse(text)
        .expect_err("must be refused")
        .problems()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_documented_example_parses() {
    let rs = parse(EXAMPLE).expect("valid");
    assert_eq!(rs.policy.forward, Verdict::Drop);
    assert_eq!(rs.sets.len(), 1);
    assert_eq!(rs.sets[0].prefixes.len(), 2);
    assert_eq!(rs.sets[0].comment, "abusers");
    assert_eq!(rs.rules.len(), 3);
    assert_eq!(rs.rules[0].src, Some(AddrMatch::Set("blocklist".into())));
    let ssh = &rs.rules[1];
    assert_eq!(ssh.in_iface.as_deref(), Some("eth1"));
    assert_eq!(ssh.proto, Some(Proto(6)));
    assert_eq!(
        ssh.sport,
        Some(PortRange {
            lo: 1024,
            hi: 65535
        })
    );
    assert_eq!(ssh.dport, Some(PortRange { lo: 22, hi: 22 }));
    assert_eq!(
        ssh.tcp_flags,
        Some(TcpFlags {
            mask: 0x12,
            value: 0x02
        })
    );
    assert_eq!(
        ssh.state.iter().copied().collect::<Vec<_>>(),
        [CtState::New, CtState::Established]
    );
    assert!(!rs.rules[2].enabled);
    assert!(rs.rules.iter().all(|r| r.id == 0));
}

#[test]
fn an_empty_file_is_the_empty_ruleset_and_policy_defaults_per_chain() {
    assert_eq!(parse("").expect("empty"), Ruleset::default());
    let rs = parse("[policy]\nforward = \"drop\"\n").expect("partial policy");
    assert_eq!(
        (rs.policy.forward, rs.policy.input),
        (Verdict::Drop, Verdict::Accept)
    );
}

#[test]
fn render_parses_back_to_the_same_ruleset() {
    let mut rs = parse(EXAMPLE).expect("valid");
    // Awkward text: quotes, backslashes, newlines, a dotted set name.
    rs.sets.push(AddressSet {
        name: "a.b-c_d".into(),
        prefixes: vec![],
        comment: "say \"hi\"\\\nbye".into(),
    });
    rs.rules[0].comment = "tab\there".into();
    rs.rules.push(
        serde_json::from_value(serde_json::json!({
            "chain": "forward", "dst": "@a.b-c_d", "proto": 99, "action": "reject"
        }))
        .expect("rule"),
    );
    let text = render(&rs);
    assert_eq!(parse(&text).expect("rendered file parses"), rs, "{text}");
    assert!(text.contains("dport = 22\n"), "{text}");
    assert!(text.contains("sport = \"1024-65535\"\n"), "{text}");
    assert!(text.contains("[sets.\"a.b-c_d\"]"), "{text}");
    assert_eq!(render(&parse(&text).expect("again")), text);
}

#[test]
fn render_leaves_out_ids_and_defaults() {
    let mut rs = parse(EXAMPLE).expect("valid");
    rs.rules[0].id = 42;
    let text = render(&rs);
    assert!(!text.contains("id ="), "{text}");
    assert_eq!(text.matches("enabled = false").count(), 1, "{text}");
}

#[test]
fn syntax_errors_have_line_and_column() {
    let found = problems("[policy]\nforward = \"drop\"\ninput = \n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("3:"), "{found:?}");
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = r#"unexpected = 1
[policy]
forward = "block"

[sets.bad]
prefixes = ["198.18.0.1/24", "nonsense"]

[[rule]]
chain = "forward"
sport = "2000-1000"
proto = "tcpp"
bogus = 1
action = "drop"

[[rule]]
chain = "input"
out = "eth2"
action = "drop"

[[rule]]
chain = "forward"
dst = "@missing"
dport = 22
action = "accept"

[[rule]]
chain = "forward"

[[rule]]
chain = "forward"
src = "@bad"
action = "drop"
"#;
    let found = problems(text);
    let expect: [(&str, &str); 11] = [
        ("1:1:", "unknown key \"unexpected\""),
        ("3:11:", "unknown variant `block`"),
        ("6:13:", "set @bad: \"198.18.0.1/24\" has host bits set"),
        ("6:30:", "set @bad: \"nonsense\" is not an IPv4/IPv6"),
        ("10:9:", "reversed"),
        ("11:9:", "unknown protocol"),
        ("12:1:", "unknown field `bogus`"),
        ("15:", "the input chain has no egress interface"),
        ("20:", "sport/dport need"),
        ("20:", "@missing does not exist"),
        ("26:", "the rule has no \"action\""),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((line, what), got) in expect.iter().zip(&found) {
        assert!(
            got.starts_with(line) && got.contains(what),
            "{got:?} is not {line} {what}"
        );
    }
    // `@bad` exists (with its good prefixes): no echo of its problems.
    assert!(!found.iter().any(|p| p.contains("@bad does not exist")));
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("xdpgate-fwfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("fw.toml");
    std::fs::write(&path, "[[rule]]\nchain = \"forward\"\naction = \"nope\"\n").expect("write");
    let err = load(&path).expect_err("bad file").to_string();
    assert!(
        err.starts_with(&format!("{}: 1 problem\n", path.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:3:10: unknown variant `nope`", path.display())),
        "{err}"
    );
    std::fs::write(&path, EXAMPLE).expect("write");
    let (rs, lines) = load_with_lines(&path).expect("valid");
    assert_eq!(rs, parse(EXAMPLE).expect("valid"));
    assert_eq!(lines, [10, 16, 28]);
    let missing = load(&dir.join("absent.toml"))
        .expect_err("no file")
        .to_string();
    assert!(missing.contains("absent.toml"), "{missing}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn a_100k_prefix_set_parses_and_renders() {
    let prefixes: Vec<String> = (0..100_000u32)
        .map(|i| format!("\"{}\"", std::net::Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let text = format!("[sets.big]\nprefixes = [{}]\n", prefixes.join(",\n"));
    let t = std::time::Instant::now();
    let rs = parse(&text).expect("valid");
    let parsed = t.elapsed();
    assert_eq!(rs.sets[0].prefixes.len(), 100_000);
    let t = std::time::Instant::now();
    let back = render(&rs);
    println!(
        "100k-prefix file: parse {parsed:?}, render {:?}",
        t.elapsed()
    );
    assert_eq!(parse(&back).expect("round trip"), rs);
}

#[test]
fn the_log_flag_parses_renders_and_defaults_off() {
    let text = r#"
[[rule]]
chain = "forward"
proto = "tcp"
dport = 23
action = "drop"
log = true

[[rule]]
chain = "input"
action = "reject"
"#;
    let rs = parse(text).expect("valid");
    assert!(rs.rules[0].log);
    assert!(!rs.rules[1].log, "log defaults to false");
    let back = render(&rs);
    assert_eq!(back.matches("log = true").count(), 1, "{back}");
    assert!(!back.contains("log = false"), "{back}");
    assert_eq!(parse(&back).expect("rendered file parses"), rs);
    // Not a boolean: refused at its line and column.
    let found = problems("[[rule]]\nchain = \"forward\"\naction = \"drop\"\nlog = \"yes\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("4:7:"), "{found:?}");
}
