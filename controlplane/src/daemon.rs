//! `xdpgate run`: load, attach, serve the API, and on SIGINT/SIGTERM detach
//! from every interface and exit cleanly.
use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};
use tracing::{info, warn};

use crate::{
    bpffs, conntrack,
    dataplane::{
        AttachMode, Dataplane, DataplaneError, LoadOptions,
        pin::{self, PinDir},
    },
    db,
    events::{self, EventLog, Severity, emit},
    fib::{NeighSpec, NextHopSpec, RouteSpec, RouteSpecKind, RouteTarget},
    firewall::{Firewall, FirewallError},
    firewall_log,
    flowexport::{self, ExportSettings, Exporter},
    http,
    managed::{self, Wanted},
    netlink::{
        self,
        reconcile::{Reconciler, SyncConfig},
        source::RtnlSource,
        sync::SyncStatus,
    },
    netns,
    outbox::Outbox,
};
use serde_json::json;

/// How often expired connections are deleted from the table.
const CONNTRACK_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Datagrams waiting for the outbox thread, and per socket inside it: a
/// slow collector costs at most this much memory, then drops are counted.
const OUTBOX_CHANNEL: usize = 4096;
const OUTBOX_QUEUE: usize = 4096;

/// How long the daemon waits for the first kernel snapshot before serving.
const FIRST_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub ifaces: Vec<String>,
    pub mode: AttachMode,
    pub api: SocketAddr,
    pub db: PathBuf,
    /// Enter this network namespace after binding the API listener: the API
    /// stays reachable where the daemon was started, XDP and netlink work in
    /// the namespace (the lab's router).
    pub netns: Option<String>,
    /// Static routes written into the XDP maps at start.
    pub routes: Vec<RouteSpec>,
    /// Static neighbours written into the XDP maps at start.
    pub neighbours: Vec<NeighSpec>,
    /// Follow the kernel's links, routes and neighbours over netlink.
    pub kernel_sync: bool,
    /// Routing tables whose routes XDP follows.
    pub tables: Vec<u32>,
    /// Netlink receive buffer in bytes (tests shrink it to force overruns).
    pub netlink_rcvbuf: Option<usize>,
    /// Map sizes: the firewall's bitmap pool and the connection table.
    pub load: LoadOptions,
    /// Idle timeout per `CT_*` connection state, seconds.
    pub ct_timeouts: [u32; dataplane_common::CT_TIMEOUTS],
    /// Pin directory (None: the default for `netns`).
    pub pin_dir: Option<PathBuf>,
    /// Remove the previous daemon's pinned state instead of adopting it.
    pub fresh: bool,
    /// Serve the API over TLS: (certificate chain, key), PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Leave the pinned program forwarding on SIGTERM/SIGINT.
    pub keep_attached: bool,
    /// IPFIX export (on when it names a collector).
    pub export: crate::flowexport::ExportSettings,
    /// Event log file and syslog collector.
    pub event_log: Option<PathBuf>,
    pub syslog: Option<std::net::SocketAddr>,
}

impl RunConfig {
    pub fn pins(&self) -> PinDir {
        PinDir::new(
            self.pin_dir
                .clone()
                .unwrap_or_else(|| pin::default_dir(self.netns.as_deref())),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("xdpgate run needs root (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")]
    NotRoot,
    #[error("no interface given: pass --iface IF at least once")]
    NoInterfaces,
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("--route {route}: {reason}")]
    Route { route: String, reason: String },
    #[error("--neigh {neigh}: {reason}")]
    Neighbour { neigh: String, reason: String },
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("serving the API: {0}")]
    Serve(#[source] std::io::Error),
    #[error(
        "the stored firewall ruleset cannot be applied, so xdpgate will not start unfiltered: {0}"
    )]
    Firewall(#[source] FirewallError),
    #[error("the dataplane lock is poisoned (a thread panicked holding it)")]
    Poisoned,
    #[error("TLS for the API: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("detaching left errors: {0:?}")]
    Detach(Vec<String>),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error(transparent)]
    Events(#[from] crate::events::EventError),
    #[error(transparent)]
    Export(#[from] crate::flowexport::ExportError),
    #[error("the firewall drop log: {0}")]
    DropLog(#[from] firewall_log::DropLogError),
}

/// Run the daemon until SIGINT or SIGTERM. Blocking: builds its own runtime
/// after entering the namespace, so every runtime thread lives there.
pub fn run(cfg: RunConfig) -> Result<(), DaemonError> {
    if !bpffs::is_privileged() {
        return Err(DaemonError::NotRoot);
    }
    if cfg.ifaces.is_empty() {
        return Err(DaemonError::NoInterfaces);
    }
    bpffs::require()?;
    // A bad certificate or key stops the start before anything is bound.
    let tls = cfg
        .tls
        .as_ref()
        .map(|(cert, key)| crate::tls::server_config(cert, key))
        .transpose()?;
    let listener = TcpListener::bind(cfg.api).map_err(|source| DaemonError::Listen {
        addr: cfg.api,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DaemonError::Listen {
            addr: cfg.api,
            source,
        })?;
    if let Some(ns) = &cfg.netns {
        netns::enter(ns)?;
        info!(netns = %ns, "entered network namespace");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?
        .block_on(serve(cfg, listener, tls))
}

/// Attach to every interface, or to none: a failure detaches what was
/// attached and returns the error.
fn attach_all(dp: &mut Dataplane, cfg: &RunConfig) -> Result<(), DaemonError> {
    for iface in &cfg.ifaces {
        if let Err(e) = managed::attach(dp, iface, cfg.mode) {
            for d in dp.detach_all() {
                warn!("while backing out: {d}");
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// Attach the interfaces saved by the API (`saved_ifaces`), after the
/// `--iface` set. Unlike those, a failure does not stop the start: the
/// interface stays wanted, so the kernel sync attaches it when it appears
/// (a veth or VLAN created after the daemon), and the log says why.
fn attach_saved(dp: &mut Dataplane, saved: &[(String, AttachMode)]) {
    for (name, mode) in saved {
        match managed::attach(dp, name, *mode) {
            Ok(_) => info!(iface = %name, %mode, "attached (saved by the API)"),
            Err(e) => warn!(iface = %name, %mode,
                "saved by the API but not attached now ({e}); the kernel sync attaches it when it appears"),
        }
    }
}

/// ifindex of a managed interface named `name`.
fn managed_ifindex(dp: &Dataplane, name: &str) -> Option<u32> {
    dp.fib()
        .ifaces()
        .find(|(i, _)| i.name == name)
        .map(|(i, _)| i.ifindex)
}

/// Turn a `--route` flag into a Fib route over managed interfaces.
fn route_target(dp: &Dataplane, spec: &RouteSpec) -> Result<RouteTarget, String> {
    Ok(match &spec.kind {
        RouteSpecKind::Local => RouteTarget::Local,
        RouteSpecKind::Blackhole => RouteTarget::Blackhole,
        RouteSpecKind::Unreachable => RouteTarget::Unreachable,
        RouteSpecKind::Prohibit => RouteTarget::Prohibit,
        RouteSpecKind::Via(hops) => {
            let mut nexthops = Vec::new();
            for (gateway, dev) in hops {
                let ifindex = managed_ifindex(dp, dev)
                    .ok_or_else(|| format!("{dev} is not one of the --iface interfaces"))?;
                nexthops.push(NextHopSpec {
                    gateway: *gateway,
                    ifindex,
                });
            }
            RouteTarget::Multipath { nexthops }
        }
    })
}

/// Write the static `--route` and `--neigh` flags into the maps.
fn install_static(dp: &mut Dataplane, cfg: &RunConfig) -> Result<(), DaemonError> {
    for spec in &cfg.routes {
        let route_err = |reason: String| DaemonError::Route {
            route: spec.prefix.to_string(),
            reason,
        };
        let target = route_target(dp, spec).map_err(route_err)?;
        dp.update(|fib| fib.set_route(spec.prefix, target))
            .map_err(|e| route_err(e.to_string()))?;
        info!(prefix = %spec.prefix, "static route");
    }
    for n in &cfg.neighbours {
        let neigh_err = |reason: String| DaemonError::Neighbour {
            neigh: n.addr.to_string(),
            reason,
        };
        let ifindex = managed_ifindex(dp, &n.dev)
            .ok_or_else(|| neigh_err(format!("{} is not one of the --iface interfaces", n.dev)))?;
        dp.update(|fib| fib.set_neighbour(ifindex, n.addr, n.mac))
            .map_err(|e| neigh_err(e.to_string()))?;
        info!(addr = %n.addr, dev = %n.dev, "static neighbour");
    }
    Ok(())
}

/// Install the event log (file and/or syslog) and settle the export
/// settings: the stored ones (`PUT /api/v1/export`), else the config
/// file's.
async fn start_event_log(
    pool: &sqlx::SqlitePool,
    cfg: &RunConfig,
    outbox: &Arc<Outbox>,
) -> Result<ExportSettings, DaemonError> {
    if cfg.event_log.is_some() || cfg.syslog.is_some() {
        let log = EventLog::open(cfg.event_log.as_deref(), cfg.syslog, Some(outbox.clone()))?;
        info!(file = ?cfg.event_log, syslog = ?cfg.syslog, "event log");
        events::install(Some(Arc::new(log)));
    }
    let settings = match flowexport::stored(pool).await? {
        Some(s) => {
            info!(
                "export settings from the database (PUT /api/v1/export) override the config file"
            );
            s
        }
        None => cfg.export.clone(),
    };
    if settings.enabled() {
        info!(collectors = ?settings.collectors, "IPFIX export on");
    }
    Ok(settings)
}

async fn serve(
    cfg: RunConfig,
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> Result<(), DaemonError> {
    let pool = db::open(&cfg.db).await?;
    db::put_setting(&pool, "last_start_interfaces", &cfg.ifaces.join(",")).await?;
    let outbox = Arc::new(Outbox::start(OUTBOX_CHANNEL, OUTBOX_QUEUE)?);
    info!(backend = outbox.backend(), "outbox (IPFIX, syslog) started");
    let export_settings = start_event_log(&pool, &cfg, &outbox).await?;
    let pins = cfg.pins();
    if cfg.fresh {
        let removed = pins.remove_all().map_err(DataplaneError::from)?;
        info!(dir = %pins.root().display(), removed = removed.len(), "--fresh: previous pinned state removed");
    } else if !pins.pinned_ports().is_empty() {
        info!(dir = %pins.root().display(), ports = ?pins.pinned_ports(),
            "adopting the pinned program: it forwards until this daemon's maps are filled");
    }
    let dataplane = Arc::new(Mutex::new(Dataplane::load_pinned(cfg.load, pins)?));
    // The stored ruleset is in the maps before any interface is attached:
    // there is no moment in which the box forwards unfiltered. A ruleset
    // that no longer applies stops the start rather than open the box.
    let mut firewall = Firewall::new(pool.clone(), dataplane.clone());
    match firewall.restore().await {
        Ok(Some(commit)) => info!(commit, "firewall ruleset restored"),
        Ok(None) => info!("no firewall ruleset committed yet: forwarding everything"),
        Err(e) => return Err(DaemonError::Firewall(e)),
    }
    tokio::spawn(conntrack::sweeper(dataplane.clone(), CONNTRACK_SWEEP));
    let firewall = Arc::new(tokio::sync::Mutex::new(firewall));
    let saved = crate::saved_ifaces::beyond_command_line(
        crate::saved_ifaces::load(&pool).await?,
        &cfg.ifaces,
    );
    let drop_log;
    let managed = {
        let mut dp = dataplane.lock().map_err(|_| DaemonError::Poisoned)?;
        // Timeouts before the first packet; the flags are the firewall's.
        let flags = dp.firewall().config()?.flags;
        dp.firewall_mut().set_conntrack(cfg.ct_timeouts, flags)?;
        // Logged drops are read from the first packet on.
        drop_log = firewall_log::spawn(&mut dp, export_settings.drop_log_limits())?;
        attach_all(&mut dp, &cfg)?;
        attach_saved(&mut dp, &saved);
        if let Err(e) = install_static(&mut dp, &cfg) {
            for d in dp.detach_all() {
                warn!("while backing out: {d}");
            }
            return Err(e);
        }
        // A saved interface missing now is managed too: the sync attaches
        // it when it appears.
        let mut managed: Vec<String> = dp.fib().ifaces().map(|(i, _)| i.name.clone()).collect();
        for (name, _) in &saved {
            if !managed.contains(name) {
                managed.push(name.clone());
            }
        }
        managed
    };
    // Static routes go into the kernel before the sync's first dump, so
    // XDP starts with them; one that no longer applies is logged, not fatal.
    match crate::static_routes::reinstall(&pool).await {
        Ok((0, failed)) if failed.is_empty() => {}
        Ok((n, failed)) => info!(installed = n, failed = failed.len(), "static routes"),
        Err(e) => warn!("static routes not reinstalled: {e}"),
    }
    let (sync_tx, sync_rx) = watch::channel(SyncStatus {
        enabled: cfg.kernel_sync,
        ..SyncStatus::default()
    });
    let wanted = Wanted::new(cfg.ifaces.iter().cloned(), cfg.mode);
    for (name, mode) in &saved {
        wanted.insert(name, *mode);
    }
    if cfg.kernel_sync {
        let reconciler = Reconciler::new(
            SyncConfig {
                tables: cfg.tables.clone(),
            },
            managed,
        );
        let source = RtnlSource::new(cfg.netlink_rcvbuf);
        tokio::spawn(netlink::sync::run(
            source,
            reconciler,
            dataplane.clone(),
            sync_tx,
            wanted.clone(),
        ));
        // Serve once the maps follow the kernel, so "healthy" means
        // "forwarding"; a slow dump (a full table) is waited for, bounded.
        let mut rx = sync_rx.clone();
        match tokio::time::timeout(FIRST_SYNC_WAIT, rx.wait_for(|s| s.in_sync)).await {
            Ok(_) => info!("kernel state synchronised"),
            Err(_) => warn!(
                "no complete kernel snapshot after {} s; serving, sync continues",
                FIRST_SYNC_WAIT.as_secs()
            ),
        }
    } else {
        info!("kernel sync off: only --route/--neigh feed the maps");
    }
    // Our maps now hold the kernel's state: swap adopted links over.
    {
        let mut dp = dataplane.lock().map_err(|_| DaemonError::Poisoned)?;
        let swapped = dp.adopt_pending()?;
        if !swapped.is_empty() {
            info!(ports = ?swapped, "pinned links swapped to this daemon's program (BPF_LINK_UPDATE)");
        }
    }
    let exporter = Arc::new(Exporter::start(
        &dataplane,
        export_settings,
        outbox.clone(),
    )?);
    emit(
        Severity::Notice,
        "daemon_start",
        json!({ "version": env!("CARGO_PKG_VERSION"), "interfaces": cfg.ifaces }),
    );
    let state = http::AppState {
        export: Some(exporter.clone()),
        drop_log: Some(Arc::new(drop_log)),
        dataplane: dataplane.clone(),
        db: pool.clone(),
        sync: sync_rx,
        firewall,
        wanted,
        listener_is_loopback: cfg.api.ip().to_canonical().is_loopback(),
    };
    if !state.listener_is_loopback {
        info!("the API is not on loopback: every request needs a token (`xdpgate token create`)");
    }
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|source| DaemonError::Listen {
            addr: cfg.api,
            source,
        })?;
    info!(api = %cfg.api, "serving");
    let served = match tls {
        Some(config) => {
            info!("the API speaks TLS only");
            crate::tls::serve(listener, http::app(state), config, shutdown_signal()).await
        }
        None => {
            axum::serve(listener, http::app(state))
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    }
    .map_err(DaemonError::Serve);
    emit(
        Severity::Notice,
        "daemon_stop",
        json!({ "keep_attached": cfg.keep_attached }),
    );
    // The exporter sends every flow's last record before the maps go; then
    // the outbox flushes what is queued.
    drop(exporter);
    events::install(None);
    drop(outbox);
    let errors = {
        let mut dp = dataplane.lock().expect("dataplane lock poisoned");
        if cfg.keep_attached {
            let n = dp.keep_attached();
            info!(
                ports = n,
                "--keep-attached: the pinned program keeps forwarding"
            );
            Vec::new()
        } else {
            let mut errors = dp.detach_all();
            if let Err(e) = dp.unpin_all() {
                errors.push(e);
            }
            errors
        }
    };
    pool.close().await;
    served?;
    if !errors.is_empty() {
        return Err(DaemonError::Detach(
            errors.iter().map(|e| e.to_string()).collect(),
        ));
    }
    if !cfg.keep_attached {
        info!("detached from every interface; bye");
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
