//! Attach, detach and readiness on a veth pair (and a bridge, which
//! has no native XDP) in a namespace of the test's own. Needs root.
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;
use sqlx::SqlitePool;
use tokio::sync::watch;

use crate::{
    dataplane::AttachMode, http::AppState, managed::Wanted, netlink::sync::SyncStatus, netns,
};

/// A namespace with `veth0`/`veth1` (up) and `br0` (up), deleted on
/// drop, panic or not.
struct NsGuard {
    name: String,
}

impl NsGuard {
    #[track_caller]
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "xdpif{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let _ = netns::delete(&name);
        netns::add(&name).expect("add namespace");
        let guard = NsGuard { name };
        let n = guard.name.as_str();
        for args in [
            &[
                "-n", n, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
            ][..],
            &["-n", n, "link", "add", "br0", "type", "bridge"],
            &["-n", n, "link", "set", "veth0", "up"],
            &["-n", n, "link", "set", "veth1", "up"],
            &["-n", n, "link", "set", "br0", "up"],
        ] {
            netns::ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
        }
        guard
    }

    /// Run `test` on a runtime whose every thread lives in the namespace
    /// (XDP attaches and interface lookups use the calling thread's).
    #[track_caller]
    fn run<F: Future<Output = ()>>(&self, test: impl FnOnce() -> F + Send) {
        netns::in_netns(&self.name, || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(test())
        })
        .expect("the test in the namespace panicked (its message is above)");
    }

    fn xdp_on(&self, dev: &str) -> Option<u64> {
        crate::lab::xdp_prog_id(&self.name, dev).expect("ip link show")
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = netns::delete(&self.name);
    }
}

/// The shared test state with the interfaces wanted and the sync status
/// given.
async fn state(db: SqlitePool, wanted: Wanted, sync: SyncStatus) -> AppState {
    let mut st = crate::http::testutil::state(db).await;
    st.wanted = wanted;
    st.sync = watch::channel(sync).1;
    st
}

use crate::http::testutil::call;

async fn saved(st: &AppState) -> Vec<(String, AttachMode)> {
    crate::saved_ifaces::load(&st.db)
        .await
        .expect("saved interfaces")
}

#[sqlx::test(migrations = "../migrations")]
async fn attach_then_detach_a_veth_with_every_error_status(db: SqlitePool) {
    let ns = &NsGuard::new();
    ns.run(|| async move {
        let st = state(db, Wanted::default(), SyncStatus::default()).await;
        let (status, body) = call(&st, "GET", "/api/v1/interfaces", None).await;
        assert_eq!((status, body), (200, json!([])));
        let (status, body) = call(&st, "GET", "/api/v1/interfaces/nope0", None).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
        let (status, body) = call(&st, "GET", "/api/v1/interfaces/veth0", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["attached"], false);
        assert_eq!(body["managed"], false);

        let skb = Some(json!({ "mode": "skb" }));
        let (status, body) =
            call(&st, "POST", "/api/v1/interfaces/nope0/attach", skb.clone()).await;
        assert_eq!(status, 404, "{body}");
        let bogus = Some(json!({ "mode": "bogus" }));
        let (status, body) = call(&st, "POST", "/api/v1/interfaces/veth0/attach", bogus).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "bad_request");

        let (status, body) =
            call(&st, "POST", "/api/v1/interfaces/veth0/attach", skb.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["attached"], true);
        assert_eq!(body["wanted"], true);
        assert_eq!(body["managed"], true);
        assert_eq!(body["mode"], "skb");
        assert!(body["ifindex"].as_u64().is_some(), "{body}");
        // Not 0: the peer's IPv6 autoconfiguration (MLD, RS) may already
        // have crossed the fresh program.
        assert!(
            body["counters"]["received"]["packets"].as_u64().is_some(),
            "{body}"
        );
        assert!(ns.xdp_on("veth0").is_some(), "XDP is on veth0");
        assert_eq!(
            saved(&st).await,
            [("veth0".to_string(), AttachMode::Skb)],
            "saved for the next start"
        );

        let (status, body) = call(&st, "POST", "/api/v1/interfaces/veth0/attach", skb).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "conflict");

        let (status, body) = call(&st, "GET", "/readyz", None).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(&st, "GET", "/api/v1/interfaces", None).await;
        assert_eq!(status, 200);
        let names: Vec<&str> = body
            .as_array()
            .expect("a list")
            .iter()
            .map(|i| i["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["veth0"]);

        let (status, body) = call(&st, "POST", "/api/v1/interfaces/veth0/detach", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["attached"], false);
        assert_eq!(body["wanted"], false);
        assert_eq!(body["managed"], true, "stays in the forwarding table");
        assert_eq!(ns.xdp_on("veth0"), None, "XDP is off veth0");
        assert!(saved(&st).await.is_empty(), "forgotten when detached");
        let (status, body) = call(&st, "POST", "/api/v1/interfaces/veth0/detach", None).await;
        assert_eq!(status, 409, "{body}");
        let (status, body) = call(&st, "POST", "/api/v1/interfaces/nope0/detach", None).await;
        assert_eq!(status, 404, "{body}");

        // Attaching again reuses the slot and the mode given now.
        let native = Some(json!({ "mode": "native" }));
        let (status, body) = call(&st, "POST", "/api/v1/interfaces/veth0/attach", native).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mode"], "native");
        assert!(ns.xdp_on("veth0").is_some());
        assert_eq!(
            saved(&st).await,
            [("veth0".to_string(), AttachMode::Native)]
        );
        st.dataplane.lock().expect("lock").detach_all();
    });
}

#[sqlx::test(migrations = "../migrations")]
async fn a_refused_native_attach_is_a_422_with_the_kernels_reason(db: SqlitePool) {
    let ns = &NsGuard::new();
    ns.run(|| async move {
        let st = state(db, Wanted::default(), SyncStatus::default()).await;
        let native = Some(json!({ "mode": "native" }));
        let (status, body) = call(&st, "POST", "/api/v1/interfaces/br0/attach", native).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "unprocessable");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("br0") && message.contains("native"),
            "{message}"
        );
        // Nothing was left behind: not attached, not wanted, not managed.
        let (status, body) = call(&st, "GET", "/api/v1/interfaces", None).await;
        assert_eq!((status, body), (200, json!([])));
        assert_eq!(ns.xdp_on("br0"), None);
        assert!(saved(&st).await.is_empty(), "nor saved");
    });
}

#[sqlx::test(migrations = "../migrations")]
async fn readyz_lists_every_reason_until_attached_and_in_sync(db: SqlitePool) {
    let ns = &NsGuard::new();
    ns.run(|| async move {
        let wanted = Wanted::new(["veth0".to_owned(), "veth1".to_owned()], Default::default());
        let sync = SyncStatus {
            enabled: true,
            ..SyncStatus::default()
        };
        let st = state(db, wanted, sync).await;
        let (status, body) = call(&st, "GET", "/readyz", None).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "unavailable");
        let details = body["error"]["details"].as_array().expect("details");
        assert_eq!(details.len(), 3, "{body}");
        assert!(details.contains(&json!("veth0 is not attached")), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains("kernel sync"),
            "{body}"
        );
        // Liveness is unaffected.
        let (status, _) = call(&st, "GET", "/healthz", None).await;
        assert_eq!(status, 200);
        {
            let mut dp = st.dataplane.lock().expect("lock");
            for i in ["veth0", "veth1"] {
                crate::managed::attach(&mut dp, i, crate::dataplane::AttachMode::Skb)
                    .expect("attach");
            }
        }
        let (status, body) = call(&st, "GET", "/readyz", None).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            body["error"]["details"],
            json!(["the kernel sync has no complete snapshot yet"])
        );
        // Readiness needs the sync only when it runs.
        let st = AppState {
            sync: watch::channel(SyncStatus::default()).1,
            ..st
        };
        let (status, body) = call(&st, "GET", "/readyz", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ready");
        st.dataplane.lock().expect("lock").detach_all();
    });
}
