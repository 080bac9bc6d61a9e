//! The store's commit-confirm state and piecemeal candidate edits.
use std::path::Path;

use super::*;
use crate::db;

async fn memory() -> SqlitePool {
    db::open(Path::new(":memory:")).await.expect("db")
}

#[track_caller]
fn rule(json: serde_json::Value) -> Rule {
    serde_json::from_value(json).expect("valid rule")
}

#[tokio::test]
async fn a_pending_commit_is_recorded_with_it_and_resolved_by_the_rollback() {
    let pool = memory().await;
    assert_eq!(pending_confirm(&pool).await.expect("read"), None);
    let first = record_commit(&pool, &Ruleset::default(), "a", "")
        .await
        .expect("commit");
    let rs = Ruleset {
        rules: vec![rule(
            serde_json::json!({"chain": "forward", "action": "drop"}),
        )],
        ..Default::default()
    };
    let p = record_commit_pending(&pool, &rs, "b", "try", 30)
        .await
        .expect("pending commit");
    assert_eq!((p.previous_commit, p.confirm_within), (Some(first), 30));
    assert!(
        p.deadline.ends_with('Z') && p.deadline.len() == 24,
        "{}",
        p.deadline
    );
    assert_eq!(
        active(&pool).await.expect("active").map(|a| a.0),
        Some(p.commit)
    );
    assert_eq!(pending_confirm(&pool).await.expect("read"), Some(p.clone()));
    // A second pending row cannot exist.
    assert!(record_commit_pending(&pool, &rs, "c", "", 5).await.is_err());
    let back = record_commit_resolving(&pool, &Ruleset::default(), "rollback", "why")
        .await
        .expect("rollback");
    assert!(back > p.commit);
    assert_eq!(pending_confirm(&pool).await.expect("read"), None);
    assert!(!clear_pending_confirm(&pool).await.expect("clear"));
}

#[tokio::test]
async fn confirming_clears_the_row_once() {
    let pool = memory().await;
    record_commit_pending(&pool, &Ruleset::default(), "a", "", 10)
        .await
        .expect("pending");
    assert!(clear_pending_confirm(&pool).await.expect("clear"));
    assert!(!clear_pending_confirm(&pool).await.expect("clear again"));
}

#[tokio::test]
async fn sets_are_created_replaced_listed_and_deleted_unless_used() {
    let pool = memory().await;
    let web = AddressSet {
        name: "web".into(),
        prefixes: vec!["198.18.2.10/32".parse().unwrap()],
        comment: "w".into(),
    };
    assert!(put_set(&pool, &web).await.expect("create"));
    let other = AddressSet {
        name: "other".into(),
        prefixes: vec![],
        comment: String::new(),
    };
    assert!(put_set(&pool, &other).await.expect("create"));
    let web2 = AddressSet {
        prefixes: vec![
            "198.18.2.0/24".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
        ],
        ..web.clone()
    };
    assert!(!put_set(&pool, &web2).await.expect("replace"));
    assert_eq!(set(&pool, "web").await.expect("get"), Some(web2.clone()));
    assert_eq!(set(&pool, "nope").await.expect("get"), None);
    let all = set_summaries(&pool, 10, None).await.expect("list");
    assert_eq!(
        all.iter()
            .map(|s| (s.name.as_str(), s.count))
            .collect::<Vec<_>>(),
        [("web", 2), ("other", 0)]
    );
    let page2 = set_summaries(&pool, 10, Some(all[0].position))
        .await
        .expect("page");
    assert_eq!(page2.len(), 1);
    assert_eq!(set_names(&pool).await.expect("names"), ["web", "other"]);
    // The whole-candidate view agrees.
    assert_eq!(candidate(&pool).await.expect("candidate").sets[0], web2);

    let rules = vec![
        rule(serde_json::json!({"chain": "forward", "action": "accept"})),
        rule(serde_json::json!({"chain": "forward", "dst": "@web", "action": "drop"})),
    ];
    let stored = replace_candidate_rules(&pool, &rules).await.expect("rules");
    assert_eq!(
        delete_set(&pool, "web").await.expect("delete"),
        SetDelete::InUse(vec![RuleRef {
            id: stored[1].id,
            chain: Chain::Forward,
            position: 2,
        }])
    );
    assert_eq!(
        delete_set(&pool, "other").await.expect("delete"),
        SetDelete::Deleted
    );
    assert_eq!(
        delete_set(&pool, "other").await.expect("delete"),
        SetDelete::NotFound
    );
}

#[tokio::test]
async fn replacing_rules_keeps_ids_and_leaves_sets_and_policy() {
    let pool = memory().await;
    let rs = Ruleset {
        policy: Policies {
            forward: Verdict::Drop,
            input: Verdict::Accept,
        },
        rules: vec![rule(
            serde_json::json!({"chain": "input", "action": "drop"}),
        )],
        sets: vec![AddressSet {
            name: "s".into(),
            prefixes: vec!["198.18.0.0/15".parse().unwrap()],
            comment: String::new(),
        }],
    };
    let stored = replace_candidate(&pool, &rs).await.expect("candidate");
    let mut rules = stored.rules.clone();
    rules.push(rule(
        serde_json::json!({"chain": "forward", "action": "accept"}),
    ));
    let now = replace_candidate_rules(&pool, &rules).await.expect("rules");
    // Chain order: the new forward rule first, the input rule kept its id.
    assert_eq!(now[1].id, stored.rules[0].id);
    assert!(now[0].id > stored.rules[0].id);
    let (policy, read) = candidate_rules(&pool).await.expect("read");
    assert_eq!(policy, rs.policy);
    assert_eq!(read, now);
    assert_eq!(candidate(&pool).await.expect("candidate").sets, rs.sets);
}
