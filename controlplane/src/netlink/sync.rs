//! The sync task: source events -> reconciler -> Fib -> maps.
use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{
    Source, SourceEvent,
    reconcile::{FibChange, Reconciler},
};
use crate::{
    dataplane::Dataplane,
    events::{Severity, emit},
    managed::Wanted,
};
use serde_json::json;

/// What the sync has done, for the API, metrics and health.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    /// The daemon runs the sync (`--kernel-sync`); set once at start.
    pub enabled: bool,
    /// A snapshot has been applied: the maps follow the kernel.
    pub in_sync: bool,
    pub snapshots: u64,
    pub events: u64,
    pub changes: u64,
    /// Changes the Fib refused (full tables, ...), each logged.
    pub errors: u64,
    pub last_snapshot_ms: Option<u64>,
    pub routes: usize,
    pub neighbours: usize,
}

/// Run until the source ends. `status` is updated after every batch.
pub async fn run<S: Source>(
    mut source: S,
    mut reconciler: Reconciler,
    dataplane: Arc<Mutex<Dataplane>>,
    status: watch::Sender<SyncStatus>,
    wanted: Wanted,
) {
    while let Some(ev) = source.next().await {
        let ev = match ev {
            SourceEvent::Tick => {
                for (ifindex, addr) in reconciler.due_for_resolution() {
                    request_resolution(ifindex, addr).await;
                }
                continue;
            }
            ev => ev,
        };
        let started = Instant::now();
        let (changes, snapshot) = match ev {
            SourceEvent::Snapshot(s) => (reconciler.resync(s), true),
            SourceEvent::Event(e) => (reconciler.process(e), false),
            SourceEvent::Tick => unreachable!("handled above"),
        };
        let n = changes.len() as u64;
        reattach(&dataplane, &changes, &wanted);
        let (errors, resolve) = apply(&dataplane, changes);
        for (ifindex, addr) in resolve {
            request_resolution(ifindex, addr).await;
        }
        status.send_modify(|s| {
            s.changes += n;
            s.errors += errors;
            s.routes = reconciler.route_count();
            s.neighbours = reconciler.neighbour_count();
            if snapshot {
                s.in_sync = true;
                s.snapshots += 1;
                s.last_snapshot_ms = Some(started.elapsed().as_millis() as u64);
            } else {
                s.events += 1;
            }
        });
        if snapshot {
            info!(
                changes = n,
                routes = reconciler.route_count(),
                neighbours = reconciler.neighbour_count(),
                ms = started.elapsed().as_millis() as u64,
                "kernel state resynchronised"
            );
            emit(
                Severity::Info,
                "kernel_resync",
                json!({
                    "changes": n,
                    "routes": reconciler.route_count(),
                    "neighbours": reconciler.neighbour_count(),
                    "ms": started.elapsed().as_millis() as u64,
                }),
            );
        }
    }
}

/// Follow wanted interfaces that vanish and return: a vanished one is
/// forgotten (its XDP link died with it), a returning one is attached again
/// (the Fib then gets it from the same batch of changes). One the operator
/// detached through the API is no longer wanted, so it stays detached.
fn reattach(dataplane: &Mutex<Dataplane>, changes: &[FibChange], wanted: &Wanted) {
    let mut dp = dataplane.lock().expect("dataplane lock poisoned");
    for c in changes {
        match c {
            FibChange::DelIface(ifindex) => {
                if let Some(name) = dp.forget(*ifindex) {
                    warn!(iface = %name, "managed interface vanished; will attach again if it returns");
                    emit(Severity::Warning, "link_vanished", json!({ "iface": name }));
                }
            }
            FibChange::SetIface(i) if !dp.is_attached(&i.name) => {
                let Some(mode) = wanted.mode(&i.name) else {
                    continue;
                };
                match crate::managed::attach(&mut dp, &i.name, mode) {
                    Ok(_) => {
                        info!(iface = %i.name, "managed interface is back");
                        emit(Severity::Notice, "link_back", json!({ "iface": i.name }));
                    }
                    Err(e) => {
                        warn!(iface = %i.name, "re-attaching failed: {e}");
                        emit(
                            Severity::Warning,
                            "link_reattach_failed",
                            json!({ "iface": i.name, "error": e.to_string() }),
                        );
                    }
                }
            }
            FibChange::SetIface(i) => {
                // A managed link going down or up (admin or carrier).
                if let Some(prev) = dp.fib().iface(i.ifindex)
                    && prev.up != i.up
                {
                    emit(
                        Severity::Notice,
                        "link_state",
                        json!({ "iface": i.name, "up": i.up }),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Apply changes in order; returns the number refused and the next hops to
/// resolve (done after the lock is released).
pub fn apply(dataplane: &Mutex<Dataplane>, changes: Vec<FibChange>) -> (u64, Vec<(u32, IpAddr)>) {
    let mut dp = dataplane.lock().expect("dataplane lock poisoned");
    let mut errors = 0;
    let mut resolve = Vec::new();
    for c in changes {
        debug!(?c, "fib change");
        let result = match &c {
            FibChange::SetIface(i) => dp.update(|f| f.set_iface(i.clone())),
            FibChange::DelIface(i) => dp.update(|f| f.del_iface(*i)),
            FibChange::SetNeighbour(i, a, m) => dp.update(|f| f.set_neighbour(*i, *a, *m)),
            FibChange::DelNeighbour(i, a) => dp.update(|f| Ok(f.del_neighbour(*i, *a))),
            FibChange::SetRoute(p, t) => dp.update(|f| f.set_route(*p, t.clone())),
            FibChange::DelRoute(p) => dp.update(|f| f.del_route(*p)),
            FibChange::Resolve(i, a) => {
                resolve.push((*i, *a));
                Ok(())
            }
        };
        if let Err(e) = result {
            errors += 1;
            warn!(change = ?c, "the dataplane refused a change: {e}");
        }
    }
    (errors, resolve)
}

/// Ask the kernel to resolve `addr` on `ifindex` and keep it resolved: a
/// neighbour entry with NTF_EXT_MANAGED (Linux 5.16), which the kernel
/// probes by itself even with forwarding off. Done with iproute2, whose
/// `managed` keyword sets exactly that flag.
async fn request_resolution(ifindex: u32, addr: IpAddr) {
    let Ok(iface) = crate::ifinfo::read_index(ifindex) else {
        return;
    };
    let out = tokio::process::Command::new("ip")
        .args([
            "neigh",
            "replace",
            &addr.to_string(),
            "dev",
            &iface.name,
            "managed",
        ])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => debug!(%addr, dev = %iface.name, "resolution requested"),
        Ok(o) => warn!(
            %addr,
            dev = %iface.name,
            "could not request neighbour resolution: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => warn!(%addr, "could not run ip neigh: {e}"),
    }
}
