use std::collections::{BTreeMap, BTreeSet};

use axum::{body::Body, http::Request};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::http::{ROUTES, app, testutil};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc_json() -> Value {
    serde_json::to_value(document()).expect("the document serialises")
}

/// (METHOD, path) of every operation of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn listed() -> BTreeSet<(String, String)> {
    let set: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(set.len(), ROUTES.len(), "ROUTES lists a route twice");
    set
}

/// Every operation of the document with its (METHOD, path).
fn operations_of(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// JSON pointers where `a` and `b` differ, with both values.
fn differences(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                let at = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(a), Some(b)) => differences(a, b, at, out),
                    (a, b) => out.push(format!("{at}: {a:?} -> {b:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                differences(a, b, format!("{at}/{i}"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{at}: {a} -> {b}")),
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_and_round_trips() {
    let doc = doc_json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "xdpgate");
    // Back through utoipa's model unchanged, and through an independent one.
    let text = serde_json::to_string(&doc).expect("to string");
    let back: openapi::OpenApi = serde_json::from_str(&text).expect("utoipa reads it back");
    let back = serde_json::to_value(&back).expect("serialise again");
    let mut changed = Vec::new();
    differences(&doc, &back, String::new(), &mut changed);
    assert!(changed.is_empty(), "changed by a round trip: {changed:#?}");
    let spec = oas3::from_json(&text).expect("an OpenAPI 3.1 document (oas3)");
    assert_eq!(spec.openapi, "3.1.0");
    // What the JSON schema of OpenAPI does not check: references resolve,
    // operation ids are unique, path parameters are declared.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations_of(&doc) {
        let id = op["operationId"].as_str().expect("operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(
                    p["required"], true,
                    "{method} {path}: path parameters are required"
                );
                p["name"].as_str().expect("name")
            })
            .collect();
        assert_eq!(in_template, declared, "{method} {path}: path parameters");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success response"
        );
        assert!(responses.contains_key("500"), "{method} {path}: no 500");
        let open = auth::OPEN_PATHS.contains(&path.as_str());
        assert_eq!(
            responses.contains_key("401"),
            !open,
            "{method} {path}: 401 documented only where a token can be asked for"
        );
        if open {
            assert_eq!(op["security"], json!([]), "{method} {path}: open");
        }
        if op.get("requestBody").is_some() {
            assert!(responses.contains_key("413"), "{method} {path}: no 413");
        }
        for (status, r) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}: {status} is not the error shape"
                );
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"][BEARER],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "xg_<key id>_<secret>",
               "description": doc["components"]["securitySchemes"][BEARER]["description"]})
    );
}

#[test]
fn the_document_describes_exactly_the_listed_routes() {
    let doc = doc_json();
    let documented = documented(&doc);
    let listed = listed();
    let missing: Vec<_> = listed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&listed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "undocumented routes: {missing:?}; documented but not in http::ROUTES: {extra:?}"
    );
}

/// The routes the `router()` functions of `src/http` register, read from
/// their source: (METHOD, full path). A module merged into `app` before
/// the `/api/v1` nest serves its paths as they are, the others under it.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    };
    let module_src = read("mod.rs");
    let app_src = module_src.split_once("pub fn app(").expect("http::app").1;
    let (top, nested) = app_src.split_once(".nest(").expect("the /api/v1 nest");
    let prefix = nested
        .split('"')
        .nth(1)
        .expect("the nest's path")
        .to_owned();
    let nested = nested.split_once(".fallback(").expect("fallback").0;
    let modules = |text: &str| -> Vec<String> {
        text.split("::router()")
            .filter_map(|s| {
                let ident: String = s
                    .chars()
                    .rev()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                (!ident.is_empty()).then(|| ident.chars().rev().collect())
            })
            .collect()
    };
    let mut out = BTreeSet::new();
    for (prefix, modules) in [("", modules(top)), (prefix.as_str(), modules(nested))] {
        assert!(!modules.is_empty(), "no modules found in http::app");
        for m in modules {
            let src = read(&format!("{m}.rs"));
            for call in src.split(".route(").skip(1) {
                let path = call.split('"').nth(1).expect("a route's path");
                // Method names at the call's top level: `get(a).post(b)`.
                let (mut depth, mut ident) = (0usize, String::new());
                let mut methods = Vec::new();
                for c in call.chars() {
                    match c {
                        '(' => {
                            if depth == 0 && METHODS.contains(&ident.as_str()) {
                                methods.push(ident.to_uppercase());
                            }
                            depth += 1;
                        }
                        ')' if depth == 0 => break,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    if c.is_alphanumeric() || c == '_' {
                        ident.push(c);
                    } else {
                        ident.clear();
                    }
                }
                assert!(!methods.is_empty(), "{m}.rs: no method for {path}");
                for method in methods {
                    out.insert((method, format!("{prefix}{path}")));
                }
            }
        }
    }
    out
}

#[test]
fn the_listed_routes_are_the_routers() {
    let in_source = routes_in_source();
    // The web UI's static routes are not API operations (`http::UI_ROUTES`).
    let mut listed = listed();
    listed.extend(
        crate::http::UI_ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string())),
    );
    let missing: Vec<_> = in_source.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&in_source).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes missing from http::ROUTES (document them): {missing:?}; listed but not routed: {extra:?}"
    );
}

/// The parameter `name` of `METHOD path`.
fn param<'a>(doc: &'a Value, method: &str, path: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{method} {path}: no parameter {name}"))
}

#[test]
fn limits_are_the_handlers() {
    let doc = doc_json();
    for (path, max) in [
        ("/api/v1/routes", super::super::fib::MAX_LIMIT as u64),
        (
            "/api/v1/conntrack",
            super::super::conntrack::MAX_LIMIT as u64,
        ),
        (
            "/api/v1/firewall/commits",
            super::super::firewall::MAX_COMMITS_LIMIT.into(),
        ),
        (
            "/api/v1/firewall/sets",
            super::super::firewall_sets::MAX_SETS_LIMIT.into(),
        ),
    ] {
        let schema = &param(&doc, "get", path, "limit")["schema"];
        assert_eq!(schema["minimum"], 1, "{path}");
        assert_eq!(schema["maximum"], max, "{path}");
    }
    for path in ["/api/v1/neighbours", "/api/v1/links"] {
        let schema = &param(&doc, "get", path, "limit")["schema"];
        assert_eq!(
            schema["maximum"],
            super::super::fib::MAX_LIMIT as u64,
            "{path}"
        );
    }
    for path in ["/api/v1/firewall/commit", "/api/v1/firewall/apply"] {
        let schema = &param(&doc, "post", path, "confirm_within")["schema"];
        assert_eq!(schema["minimum"], 1, "{path}");
        assert_eq!(
            schema["maximum"],
            crate::firewall::MAX_CONFIRM_WITHIN,
            "{path}"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["SetBody"]["properties"]["prefixes"]["maxItems"],
        super::super::firewall_sets::MAX_SET_PREFIXES
    );
}

/// The string forms the custom serde code writes match the patterns their
/// schemas give.
#[test]
fn string_forms_match_their_schemas() {
    use crate::firewall::rule::Rule;
    let doc = doc_json();
    let schemas = &doc["components"]["schemas"];
    let rule: Rule = serde_json::from_value(json!({
        "chain": "forward", "in": "eth1", "out": "eth2", "src": "198.18.0.0/15",
        "dst": "@web", "proto": "tcp", "sport": "1024-65535", "dport": 443,
        "tcp_flags": "SYN,!ack", "state": ["new", "established"], "action": "accept",
        "comment": "https"
    }))
    .expect("a rule");
    let icmp: Rule = serde_json::from_value(json!({
        "chain": "input", "src": "2001:db8::/32", "proto": 58, "icmp": "echo-request",
        "action": "drop"
    }))
    .expect("a rule");
    let odd: Rule = serde_json::from_value(json!({
        "chain": "input", "proto": "200", "icmp": "3/4", "action": "reject"
    }))
    .expect("a rule");
    for rule in [rule, icmp, odd] {
        let v = serde_json::to_value(&rule).expect("serialise");
        for (field, schema) in [
            ("src", "AddrMatch"),
            ("dst", "AddrMatch"),
            ("sport", "PortRange"),
            ("dport", "PortRange"),
            ("icmp", "IcmpMatch"),
            ("tcp_flags", "TcpFlags"),
            ("proto", "Proto"),
        ] {
            let Some(text) = v.get(field) else { continue };
            let text = text
                .as_str()
                .unwrap_or_else(|| panic!("{field} is a string"));
            let schema = &schemas[schema];
            let mut patterns: Vec<&str> = schema["pattern"].as_str().into_iter().collect();
            let mut names = Vec::new();
            let alternatives = [&schema["oneOf"], &schema["anyOf"]];
            for alt in alternatives
                .into_iter()
                .filter_map(Value::as_array)
                .flatten()
            {
                patterns.extend(alt["pattern"].as_str());
                names.extend(alt["enum"].as_array().into_iter().flatten());
            }
            let ok = names.iter().any(|n| *n == text)
                || patterns.iter().any(|p| {
                    regex::Regex::new(p)
                        .expect("the pattern compiles")
                        .is_match(text)
                });
            assert!(ok, "{field} {text:?} does not match its schema {schema}");
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_router_serves_the_listed_routes_and_the_document(db: sqlx::SqlitePool) {
    let st = testutil::state(db).await;
    let mut by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, p) in ROUTES {
        by_path.entry(p).or_default().insert(m);
    }
    for (path, methods) in by_path {
        // A method no route has: the router answers 405 with what the path
        // takes, without running a handler.
        let uri = path
            .replace("{id}", "1")
            .replace("{name}", "x")
            .replace("{prefix}", "198.18.0.0%2F24");
        let resp = app(st.clone())
            .oneshot(
                Request::builder()
                    .method("TRACE")
                    .uri(&uri)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), 405, "TRACE {uri}");
        let allow: BTreeSet<String> = resp.headers()["allow"]
            .to_str()
            .expect("ascii")
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| m != "HEAD")
            .collect();
        let want: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
        assert_eq!(allow, want, "{path}");
    }

    let resp = app(st)
        .oneshot(
            Request::get("/api/v1/openapi.json")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let served: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(served, doc_json());
}
