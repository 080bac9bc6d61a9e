//! Static routes against a real kernel: each test runs on a thread inside
//! a namespace of its own (with a veth pair), so the host's routes
//! are never touched. Needs root.
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::{
    http::testutil::{call, state},
    netns,
};

/// A namespace removed on drop, even on panic.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// Run `f` on a current-thread runtime on a thread inside a new namespace
/// (routes are installed through the calling thread's namespace; the
/// `#[sqlx::test]` runtime waits meanwhile, the pool works from either)
/// that has `veth0` (its peer `veth0p` up too) (198.18.50.1/24, 2001:db8:50::1/64) up.
fn in_namespace<F, Fut>(f: F)
where
    F: FnOnce(String) -> Fut + Send,
    Fut: std::future::Future<Output = ()>,
{
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "xs{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    );
    let _ = netns::delete(&name);
    netns::add(&name).expect("add namespace");
    let ns = Ns(name.clone());
    for args in [
        vec![
            "-n", &name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0p",
        ],
        vec!["-n", &name, "link", "set", "veth0", "up"],
        vec!["-n", &name, "link", "set", "veth0p", "up"],
        vec!["-n", &name, "addr", "add", "198.18.50.1/24", "dev", "veth0"],
        vec![
            "-n",
            &name,
            "addr",
            "add",
            "2001:db8:50::1/64",
            "dev",
            "veth0",
            "nodad",
        ],
    ] {
        netns::ip(&args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    }
    netns::in_netns(&name, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f(name.clone()))
    })
    .expect("run in the namespace");
    drop(ns);
}

fn kernel(ns: &str, prefix: &str) -> String {
    let out = netns::ip(["-n", ns, "route", "show", "exact", prefix]).expect("ip route show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn add_list_delete_and_reinstall(db: SqlitePool) {
    in_namespace(|ns| async move {
        let st = state(db).await;
        let (status, r) = call(
            &st,
            "POST",
            "/api/v1/routes/static",
            Some(
                json!({"prefix": "198.18.60.0/24", "gateway": "198.18.50.2", "dev": "veth0",
                        "comment": "lab"}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{r}");
        let k = kernel(&ns, "198.18.60.0/24");
        assert!(k.contains("via 198.18.50.2 dev veth0 proto 205"), "{k}");
        let (status, r) = call(
            &st,
            "POST",
            "/api/v1/routes/static",
            Some(json!({"prefix": "2001:db8:66::/48", "type": "blackhole"})),
        )
        .await;
        assert_eq!(status, 201, "{r}");
        let out = netns::ip([
            "-n",
            &ns,
            "-6",
            "route",
            "show",
            "exact",
            "2001:db8:66::/48",
        ])
        .expect("ip -6 route");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("blackhole"),
            "{out:?}"
        );

        // Replace: same prefix, now a blackhole with a metric.
        let (status, _) = call(
            &st,
            "POST",
            "/api/v1/routes/static",
            Some(json!({"prefix": "198.18.60.0/24", "type": "blackhole", "metric": 50})),
        )
        .await;
        assert_eq!(status, 201);
        let k = kernel(&ns, "198.18.60.0/24");
        assert_eq!(k.lines().count(), 1, "{k}");
        assert!(
            k.starts_with("blackhole 198.18.60.0/24 proto 205 metric 50"),
            "{k}"
        );

        let (status, list) = call(&st, "GET", "/api/v1/routes/static", None).await;
        assert_eq!(status, 200);
        assert_eq!(
            list["items"],
            json!([
                {"prefix": "198.18.60.0/24", "type": "blackhole", "metric": 50, "installed": true},
                {"prefix": "2001:db8:66::/48", "type": "blackhole", "installed": true},
            ])
        );

        // Gone from the kernel behind our back: listed as not installed,
        // and put back by the start-up reinstall.
        netns::ip(["-n", &ns, "route", "del", "198.18.60.0/24"]).expect("ip route del");
        let (_, list) = call(&st, "GET", "/api/v1/routes/static", None).await;
        assert_eq!(list["items"][0]["installed"], false);
        let (n, failed) = crate::static_routes::reinstall(&st.db)
            .await
            .expect("reinstall");
        assert_eq!((n, failed.len()), (2, 0), "{failed:?}");
        assert!(kernel(&ns, "198.18.60.0/24").contains("proto 205"));

        let (status, v) = call(
            &st,
            "DELETE",
            "/api/v1/routes/static/198.18.60.0%2F24",
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["deleted"]["prefix"], "198.18.60.0/24");
        assert_eq!(kernel(&ns, "198.18.60.0/24"), "");
        let (status, v) = call(
            &st,
            "DELETE",
            "/api/v1/routes/static/198.18.60.0%2F24",
            None,
        )
        .await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (404, &json!("not_found")),
            "{v}"
        );
        let (status, _) = call(&st, "DELETE", "/api/v1/routes/static/nonsense", None).await;
        assert_eq!(status, 400);
    });
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_routes_are_400_and_foreign_prefixes_409(db: SqlitePool) {
    in_namespace(|ns| async move {
        let st = state(db).await;
        let bad: [(Value, &str); 7] = [
            (
                json!({"prefix": "198.18.60.1/24", "dev": "veth0"}),
                "host bits",
            ),
            (
                json!({"prefix": "nonsense", "dev": "veth0"}),
                "not an IPv4/IPv6",
            ),
            (
                json!({"prefix": "198.18.60.0/24", "dev": "nosuch0"}),
                "\"nosuch0\" does not exist",
            ),
            (
                json!({"prefix": "198.18.60.0/24", "gateway": "2001:db8:50::2"}),
                "is IPv6 but the prefix 198.18.60.0/24 is IPv4",
            ),
            (
                json!({"prefix": "198.18.60.0/24"}),
                "needs a gateway, a dev",
            ),
            (
                json!({"prefix": "198.18.60.0/24", "type": "blackhole", "dev": "veth0"}),
                "has no gateway or dev",
            ),
            (
                json!({"prefix": "198.18.60.0/24", "gateway": "x.y"}),
                "not an IPv4/IPv6 address",
            ),
        ];
        for (body, why) in bad {
            let (status, v) = call(&st, "POST", "/api/v1/routes/static", Some(body.clone())).await;
            assert_eq!(status, 400, "{body}: {v}");
            let details: Vec<&str> = v["error"]["details"]
                .as_array()
                .expect("details")
                .iter()
                .map(|d| d["message"].as_str().expect("message"))
                .collect();
            let details = details.join("; ");
            assert!(details.contains(why), "{body}: {why} not in {v}");
        }
        let (status, _) = call(
            &st,
            "POST",
            "/api/v1/routes/static",
            Some(json!({"prefix": "198.18.60.0/24", "dev": "veth0", "bogus": 1})),
        )
        .await;
        assert_eq!(status, 400);
        // A gateway the kernel cannot reach: well formed, refused there.
        let (status, v) = call(
            &st,
            "POST",
            "/api/v1/routes/static",
            Some(json!({"prefix": "198.18.61.0/24", "gateway": "203.0.113.9"})),
        )
        .await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (422, &json!("unprocessable")),
            "{v}"
        );
        // Someone else's route (and the connected one) are not ours to replace.
        netns::ip(["-n", &ns, "route", "add", "198.18.70.0/24", "dev", "veth0"]).expect("ip");
        for prefix in ["198.18.70.0/24", "198.18.50.0/24"] {
            let (status, v) = call(
                &st,
                "POST",
                "/api/v1/routes/static",
                Some(json!({"prefix": prefix, "type": "blackhole"})),
            )
            .await;
            assert_eq!(
                (status, &v["error"]["code"]),
                (409, &json!("conflict")),
                "{v}"
            );
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("did not create")
            );
        }
        assert!(kernel(&ns, "198.18.70.0/24").contains("dev veth0"));
        let (_, list) = call(&st, "GET", "/api/v1/routes/static", None).await;
        assert_eq!(list["items"], json!([]));
    });
}

#[sqlx::test(migrations = "../migrations")]
async fn the_list_is_paged_and_bad_paging_is_400(db: SqlitePool) {
    in_namespace(|_ns| async move {
        let st = state(db).await;
        for i in 0..5 {
            let (status, r) = call(
                &st,
                "POST",
                "/api/v1/routes/static",
                Some(json!({"prefix": format!("198.18.7{i}.0/24"), "type": "blackhole"})),
            )
            .await;
            assert_eq!(status, 201, "{r}");
        }
        // Three pages of 2, 2 and 1, in prefix order, each route once.
        let mut seen = Vec::new();
        let mut path = "/api/v1/routes/static?limit=2".to_owned();
        for pages in 1.. {
            let (status, page) = call(&st, "GET", &path, None).await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(page["total"], 5, "{page}");
            for r in page["items"].as_array().expect("items") {
                seen.push(r["prefix"].as_str().unwrap_or("?").to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/routes/static?limit=2&cursor={c}"),
                None => {
                    assert_eq!(pages, 3);
                    break;
                }
            }
        }
        let want: Vec<String> = (0..5).map(|i| format!("198.18.7{i}.0/24")).collect();
        assert_eq!(seen, want, "pages");
        for bad in ["limit=0", "limit=1001", "cursor=x", "colour=red"] {
            let (status, v) = call(&st, "GET", &format!("/api/v1/routes/static?{bad}"), None).await;
            assert_eq!(status, 400, "{bad}: {v}");
            assert_eq!(v["error"]["code"], "bad_request", "{bad}: {v}");
        }
    });
}
