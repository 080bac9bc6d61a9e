//! Pinned state under bpffs, so forwarding outlives the daemon.
//!
//! Layout of a pin directory (default `/sys/fs/bpf/xdpgate`, or
//! `/sys/fs/bpf/xdpgate/netns/NAME` for a daemon started with `--netns`):
//!
//! - `links/PORT`: the XDP `bpf_link` of each port (by interface name). A
//!   pinned link stays attached when the process exits or is killed; the
//!   program it runs, and so every map that program uses, stays alive with it
//!   (kernel/bpf/syscall.c: a link holds a reference on its program, a
//!   program on its maps).
//! - `prog`: the program the links run, for `bpftool prog show pinned`.
//! - `maps/NAME`: every map of that program, for inspection and for the next
//!   daemon to carry the connection table over.
//!
//! A restarted or upgraded daemon loads a *new* object and fills its maps
//! from the kernel and the database while the old program keeps forwarding,
//! then swaps each link to the new program with `BPF_LINK_UPDATE` (atomic:
//! a packet runs the old program or the new one). Map layouts may therefore
//! differ between versions: nothing but the connection table is reused.
use std::{
    io,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

/// The default pin directory of a daemon in `netns` (None: where it runs).
pub fn default_dir(netns: Option<&str>) -> PathBuf {
    let base = PathBuf::from("/sys/fs/bpf/xdpgate");
    match netns {
        Some(ns) => base.join("netns").join(ns),
        None => base,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("creating pin directory {path}: {source} (is bpffs mounted at /sys/fs/bpf?)")]
    Mkdir {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("pinning {what} at {path}: {source}")]
    Pin {
        what: String,
        path: String,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("removing pin {path}: {source}")]
    Remove {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Paths inside one pin directory.
#[derive(Debug, Clone)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn link(&self, port: &str) -> PathBuf {
        self.root.join("links").join(port)
    }

    pub fn program(&self) -> PathBuf {
        self.root.join("prog")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    /// Create `links/` and `maps/`.
    pub fn create(&self) -> Result<(), PinError> {
        for d in [self.root.join("links"), self.root.join("maps")] {
            std::fs::create_dir_all(&d).map_err(|source| PinError::Mkdir {
                path: d.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// The pinned link of `port`, if one is there.
    pub fn open_link(&self, port: &str) -> Option<FdLink> {
        PinnedLink::from_pin(self.link(port)).ok().map(FdLink::from)
    }

    /// Pin `link` as the link of `port`, replacing a stale pin.
    pub fn pin_link(&self, port: &str, link: FdLink) -> Result<FdLink, PinError> {
        let path = self.link(port);
        remove_if_present(&path)?;
        link.pin(&path)
            .map(FdLink::from)
            .map_err(|source| PinError::Pin {
                what: format!("the XDP link of {port}"),
                path: path.display().to_string(),
                source,
            })
    }

    /// Remove the pin of `port`'s link (the link detaches once no fd holds it).
    pub fn unpin_link(&self, port: &str) -> Result<(), PinError> {
        remove_if_present(&self.link(port))
    }

    /// The ports with a pinned link.
    pub fn pinned_ports(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.root.join("links")) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    /// Remove everything pinned here: links detach, the program and its maps
    /// are freed once nothing else holds them. Returns what was removed.
    pub fn remove_all(&self) -> Result<Vec<PathBuf>, PinError> {
        let mut removed = Vec::new();
        for sub in ["links", "maps"] {
            let dir = self.root.join(sub);
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    remove_if_present(&e.path())?;
                    removed.push(e.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
        let prog = self.program();
        if prog.exists() {
            remove_if_present(&prog)?;
            removed.push(prog);
        }
        let _ = std::fs::remove_dir(&self.root);
        Ok(removed)
    }
}

pub fn remove_if_present(path: &Path) -> Result<(), PinError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PinError::Remove {
            path: path.display().to_string(),
            source,
        }),
    }
}
