//! Tier 3 for commit-confirm: a ruleset committed with `confirm_within`
//! that cuts traffic undoes itself when nobody confirms it, and stays when
//! someone does. Kernel forwarding is off: every ping crosses XDP.
use std::time::Duration;

use serde_json::{Value, json};
use xdpgate::{client, lab::H2_V4};
use xdpgate_tests::support::*;

fn no_ping() -> Value {
    json!({"rules": [{"chain": "forward", "proto": "icmp", "action": "drop",
                      "comment": "no ping"}]})
}

fn last_commit(api: std::net::SocketAddr) -> Value {
    client::get_json(api, "/api/v1/firewall/commits?limit=1").expect("history")["items"][0].clone()
}

#[test]
fn an_unconfirmed_commit_rolls_back_and_a_confirmed_one_stays() {
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    let api = daemon.api;
    assert!(ping(&l.h1(), H2_V4, 1), "ping before any rule");
    let base = client::post_json(api, "/api/v1/firewall/apply", &json!({})).expect("base");

    // Not confirmed: ping is cut, then comes back by itself.
    let c = client::post_json(api, "/api/v1/firewall/apply?confirm_within=2", &no_ping())
        .expect("commit with confirm_within");
    assert_eq!(c["confirm"]["commit"], c["commit"], "{c}");
    assert!(!ping(&l.h1(), H2_V4, 1), "the rule did not drop ping");
    let p = client::get_json(api, "/api/v1/firewall/confirm").expect("pending");
    assert_eq!(p["pending"], true, "{p}");
    wait_until(
        Duration::from_secs(8),
        "the rollback to restore ping",
        || ping(&l.h1(), H2_V4, 1),
    );
    let last = last_commit(api);
    assert_eq!(last["author"], "rollback", "{last}");
    let comment = last["comment"].as_str().expect("comment");
    assert!(
        comment.contains(&format!("#{} was not confirmed within 2 s", c["commit"]))
            && comment.contains(&format!("back to #{}", base["commit"])),
        "{comment}"
    );
    assert_eq!(
        client::get_json(api, "/api/v1/firewall/confirm").expect("pending"),
        json!({"pending": false})
    );

    // Confirmed in time: it stays past the deadline.
    let c = client::post_json(api, "/api/v1/firewall/apply?confirm_within=2", &no_ping())
        .expect("commit with confirm_within");
    let ok = client::post_json(api, "/api/v1/firewall/confirm", &json!({})).expect("confirm");
    assert_eq!(ok["confirmed"], c["commit"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !ping(&l.h1(), H2_V4, 1),
        "the confirmed rule was rolled back"
    );
    assert_eq!(last_commit(api)["id"], c["commit"]);
    let active = client::get_json(api, "/api/v1/firewall/active").expect("active");
    assert_eq!(active["commit"], c["commit"]);
}

#[test]
fn a_restart_while_a_commit_is_pending_restores_the_ruleset_before() {
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    let c = client::post_json(
        daemon.api,
        "/api/v1/firewall/apply?confirm_within=600",
        &no_ping(),
    )
    .expect("commit with confirm_within");
    assert!(!ping(&l.h1(), H2_V4, 1), "the rule did not drop ping");
    let (status, log) = daemon.signal_keep_db(SIGTERM);
    assert!(status.success(), "{log}");
    let daemon = Daemon::start_forwarding(l, true, &[]);
    assert!(
        ping(&l.h1(), H2_V4, 1),
        "the unconfirmed rule survived a restart"
    );
    let last = last_commit(daemon.api);
    assert_eq!(last["author"], "rollback", "{last}");
    assert!(last["id"].as_i64() > c["commit"].as_i64());
    assert!(
        last["comment"]
            .as_str()
            .expect("comment")
            .contains("when the daemon stopped"),
        "{last}"
    );
}
