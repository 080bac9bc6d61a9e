//! The interfaces the operator wants XDP on: `--iface` at start, then
//! `POST /api/v1/interfaces/{name}/attach` and `.../detach`. Shared by the
//! daemon (attaches them at start), the kernel sync (attaches one again
//! when it comes back after vanishing, and leaves alone one the operator
//! detached) and the API (attach, detach, and `/readyz`, which is ready
//! only when every wanted interface is attached).
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tracing::info;

use crate::dataplane::{AttachMode, Attachment, Dataplane, DataplaneError};

/// Name -> mode of every interface XDP should run on. Cheap to clone (one
/// shared set).
#[derive(Debug, Clone, Default)]
pub struct Wanted(Arc<Mutex<BTreeMap<String, AttachMode>>>);

impl Wanted {
    /// Every name in `names`, in `mode`.
    pub fn new(names: impl IntoIterator<Item = String>, mode: AttachMode) -> Self {
        Self(Arc::new(Mutex::new(
            names.into_iter().map(|n| (n, mode)).collect(),
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AttachMode>> {
        self.0.lock().expect("wanted-interfaces lock poisoned")
    }

    /// The mode `name` is wanted in, if it is wanted.
    pub fn mode(&self, name: &str) -> Option<AttachMode> {
        self.lock().get(name).copied()
    }

    pub fn insert(&self, name: &str, mode: AttachMode) {
        self.lock().insert(name.to_owned(), mode);
    }

    /// Stop wanting `name`; true if it was wanted.
    pub fn remove(&self, name: &str) -> bool {
        self.lock().remove(name).is_some()
    }

    /// Every wanted interface and its mode, by name.
    pub fn all(&self) -> Vec<(String, AttachMode)> {
        self.lock().iter().map(|(n, m)| (n.clone(), *m)).collect()
    }
}

/// Attach XDP to `name` and log it: the one way an interface becomes
/// attached, at start ([`crate::daemon`]), when it comes back (the kernel
/// sync) and on request (the API).
pub fn attach(
    dp: &mut Dataplane,
    name: &str,
    mode: AttachMode,
) -> Result<Attachment, DataplaneError> {
    let a = dp.attach(name, mode)?;
    info!(iface = %a.name, ifindex = a.ifindex, slot = a.slot, mode = %a.mode, "attached");
    Ok(a)
}
