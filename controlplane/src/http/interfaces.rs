//! Interfaces XDP runs on: list them with a counters summary, attach and
//! detach at run time.
//!
//! Attaching goes through the same function as `--iface` at start
//! ([`crate::managed::attach`]) and records the interface as wanted, so the
//! kernel sync attaches it again if it vanishes and returns, and `/readyz`
//! waits for it. Detaching removes it from the wanted set: its frames go to
//! the kernel, and it stays in the forwarding table (XDP still forwards out
//! of it; see [`crate::dataplane::Dataplane::detach`]).
//!
//! Both are saved ([`crate::saved_ifaces`]): an interface attached here is
//! attached again, in the same mode, when the daemon starts; one detached
//! here is forgotten. `--iface` interfaces are attached at start anyway.
use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use utoipa::ToSchema;

use super::{
    AppState, Error,
    error::{ApiJson, ApiPath, ErrorBody},
};
use crate::{
    dataplane::{self, AttachMode, Count, Dataplane, DataplaneError},
    fib::FibError,
    managed, saved_ifaces,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/interfaces", get(list))
        .route("/interfaces/{name}", get(one))
        .route("/interfaces/{name}/attach", post(attach))
        .route("/interfaces/{name}/detach", post(detach))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountersSummary {
    /// Every frame XDP saw on the interface.
    pub received: Count,
    /// By verdict: `redirect`, `pass`, `drop`, `tx`, `aborted`.
    pub actions: BTreeMap<&'static str, Count>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InterfaceView {
    pub name: String,
    /// `null` when the interface is wanted but absent.
    pub ifindex: Option<u32>,
    /// The mode it is attached in, or wanted in when not attached.
    pub mode: Option<AttachMode>,
    pub attached: bool,
    /// Attached at start or by the API and not detached since: the kernel
    /// sync attaches it again when it returns, `/readyz` waits for it.
    pub wanted: bool,
    /// In the forwarding table (XDP forwards to it).
    pub managed: bool,
    /// Counters of its slot (`null` when unmanaged).
    pub counters: Option<CountersSummary>,
}

/// Views of every attached, managed or wanted interface, by name.
fn views(dp: &Dataplane, wanted: &managed::Wanted) -> Result<Vec<InterfaceView>, Error> {
    let mut by_name: BTreeMap<String, InterfaceView> = BTreeMap::new();
    let blank = |name: &str| InterfaceView {
        name: name.to_owned(),
        ifindex: None,
        mode: None,
        attached: false,
        wanted: false,
        managed: false,
        counters: None,
    };
    for (name, mode) in wanted.all() {
        let v = by_name.entry(name.clone()).or_insert_with(|| blank(&name));
        v.wanted = true;
        v.mode = Some(mode);
        v.ifindex = dataplane::ifindex(&name).ok();
    }
    for (iface, slot) in dp.fib().ifaces() {
        let v = by_name
            .entry(iface.name.clone())
            .or_insert_with(|| blank(&iface.name));
        v.ifindex = Some(iface.ifindex);
        v.managed = true;
        v.counters = Some(summary(dp, slot)?);
    }
    for a in dp.attachments() {
        let v = by_name
            .entry(a.name.clone())
            .or_insert_with(|| blank(&a.name));
        v.ifindex = Some(a.ifindex);
        v.mode = Some(a.mode);
        v.attached = true;
    }
    Ok(by_name.into_values().collect())
}

fn summary(dp: &Dataplane, slot: u32) -> Result<CountersSummary, Error> {
    let c = dp.counters().slot(slot)?;
    let received = c.actions.values().fold(Count::default(), |acc, v| Count {
        packets: acc.packets + v.packets,
        bytes: acc.bytes + v.bytes,
    });
    Ok(CountersSummary {
        received,
        actions: c.actions,
    })
}

/// The view of `name`; an interface of the namespace that xdpgate has never
/// seen is listed as neither attached nor managed, an unknown name is a 404.
fn view(dp: &Dataplane, wanted: &managed::Wanted, name: &str) -> Result<InterfaceView, Error> {
    if let Some(v) = views(dp, wanted)?.into_iter().find(|v| v.name == name) {
        return Ok(v);
    }
    let ifindex = dataplane::ifindex(name).map_err(|_| no_such(name))?;
    Ok(InterfaceView {
        name: name.to_owned(),
        ifindex: Some(ifindex),
        mode: None,
        attached: false,
        wanted: false,
        managed: false,
        counters: None,
    })
}

fn no_such(name: &str) -> Error {
    Error::NotFound(format!("interface {name}"))
}

/// Run `f` on the dataplane and the wanted set on a blocking thread
/// (attaching and detaching are syscalls and netlink round trips).
async fn with_dataplane<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Dataplane, &managed::Wanted) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let dp = state.dataplane.clone();
    let wanted = state.wanted.clone();
    tokio::task::spawn_blocking(move || {
        let mut dp = dp.lock().expect("dataplane lock poisoned");
        f(&mut dp, &wanted)
    })
    .await
    .expect("interface operation panicked")
}

/// Every attached, managed or wanted interface, by name.
#[utoipa::path(
    get,
    path = "/api/v1/interfaces",
    operation_id = "listInterfaces",
    tag = "interfaces",
    responses((status = 200, description = "The interfaces", body = Vec<InterfaceView>)),
)]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<InterfaceView>>, Error> {
    let wanted = state.wanted.clone();
    let dp = state.dataplane.lock().expect("dataplane lock poisoned");
    Ok(Json(views(&dp, &wanted)?))
}

/// One interface of the daemon's namespace.
#[utoipa::path(
    get,
    path = "/api/v1/interfaces/{name}",
    operation_id = "getInterface",
    tag = "interfaces",
    params(("name" = String, Path, description = "The interface's name")),
    responses(
        (status = 200, description = "The interface", body = InterfaceView),
        (status = 404, description = "No such interface", body = ErrorBody),
    ),
)]
async fn one(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<InterfaceView>, Error> {
    with_dataplane(&state, move |dp, wanted| view(dp, wanted, &name))
        .await
        .map(Json)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachBody {
    /// `native` (default) or `skb`.
    #[schema(value_type = Option<AttachMode>)]
    pub mode: Option<String>,
}

/// What an attach failure means to the client.
fn attach_error(name: &str, e: DataplaneError) -> Error {
    match e {
        DataplaneError::NoSuchInterface(_) => no_such(name),
        DataplaneError::AlreadyAttached { .. } => Error::Conflict(e.to_string()),
        DataplaneError::Attach { mode, reason, .. } => Error::Unprocessable(format!(
            "the kernel refused to attach XDP to {name} in {mode} mode: {reason}"
        )),
        DataplaneError::TooManyInterfaces | DataplaneError::Fib(FibError::FullInterfaces) => {
            Error::Unprocessable(e.to_string())
        }
        e => Error::Dataplane(e),
    }
}

/// Attach XDP to an interface and keep it attached (it becomes wanted).
#[utoipa::path(
    post,
    path = "/api/v1/interfaces/{name}/attach",
    operation_id = "attachInterface",
    tag = "interfaces",
    params(("name" = String, Path, description = "The interface's name")),
    request_body = AttachBody,
    responses(
        (status = 200, description = "Attached", body = InterfaceView),
        (status = 400, description = "An unknown mode or a bad body", body = ErrorBody),
        (status = 404, description = "No such interface", body = ErrorBody),
        (status = 409, description = "Already attached", body = ErrorBody),
        (status = 422, description = "The kernel refused, or no interface slot is free; the message says why", body = ErrorBody),
    ),
)]
async fn attach(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<AttachBody>,
) -> Result<Json<InterfaceView>, Error> {
    let mode = match body.mode.as_deref() {
        None => AttachMode::Native,
        Some(m @ ("native" | "skb")) => m.parse().map_err(Error::BadRequest)?,
        Some(m) => {
            return Err(Error::BadRequest(format!(
                "mode must be \"native\" or \"skb\", not {m:?}"
            )));
        }
    };
    let iface = name.clone();
    let attached = with_dataplane(&state, move |dp, wanted| {
        if dp.is_attached(&iface) {
            return Err(Error::Conflict(format!("{iface} is already attached")));
        }
        dataplane::ifindex(&iface).map_err(|_| no_such(&iface))?;
        // Under the dataplane lock: the kernel sync reads the wanted set
        // under it too, so it never sees one without the other.
        managed::attach(dp, &iface, mode).map_err(|e| attach_error(&iface, e))?;
        wanted.insert(&iface, mode);
        view(dp, wanted, &iface)
    })
    .await?;
    // Saved, so a restart attaches it again; a failure to save undoes the
    // attach, so what runs and what is stored agree.
    if let Err(e) = saved_ifaces::save(&state.db, &name, mode).await {
        let iface = name.clone();
        let undone = with_dataplane(&state, move |dp, wanted| {
            wanted.remove(&iface);
            dp.detach(&iface).map(|_| ()).map_err(Error::from)
        })
        .await;
        if let Err(u) = undone {
            warn!(iface = %name, "while undoing an attach that could not be saved: {u}");
        }
        return Err(e.into());
    }
    Ok(Json(attached))
}

/// Detach XDP from an interface; its frames go to the kernel.
#[utoipa::path(
    post,
    path = "/api/v1/interfaces/{name}/detach",
    operation_id = "detachInterface",
    tag = "interfaces",
    params(("name" = String, Path, description = "The interface's name")),
    responses(
        (status = 200, description = "Detached", body = InterfaceView),
        (status = 404, description = "No such interface", body = ErrorBody),
        (status = 409, description = "Not attached", body = ErrorBody),
    ),
)]
async fn detach(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<InterfaceView>, Error> {
    let iface = name.clone();
    let detached = with_dataplane(&state, move |dp, wanted| {
        if !dp.is_attached(&iface) {
            dataplane::ifindex(&iface).map_err(|_| no_such(&iface))?;
            return Err(Error::Conflict(format!("{iface} is not attached")));
        }
        dp.detach(&iface)?;
        wanted.remove(&iface);
        info!(iface = %iface, "detached on request");
        view(dp, wanted, &iface)
    })
    .await?;
    // Detached now; if forgetting fails, a restart attaches it again, and
    // the error says so.
    saved_ifaces::forget(&state.db, &name).await?;
    Ok(Json(detached))
}

#[cfg(test)]
mod tests;
