//! The real source: rtnetlink multicast groups plus nexthop objects.
//!
//! Order (STYLE.md 14): subscribe first, then dump, then deliver events. The
//! events that arrive while the dump runs are queued and delivered after the
//! snapshot, in order, so the final state is right even if some of them are
//! older than the dump. On overrun (ENOBUFS) or a closed socket the source
//! starts over: new sockets, a new snapshot; the reconciler diffs it.
use std::net::{Ipv4Addr, Ipv6Addr};

use futures::{StreamExt as _, TryStreamExt as _};
use netlink_packet_core::NetlinkPayload;
use netlink_sys::AsyncSocket as _;
use rtnetlink::{MulticastGroup, RouteMessageBuilder};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    KernelEvent, NetlinkError, Source, SourceEvent,
    convert::{process_link, process_message, process_neighbour, process_route},
    nexthop,
};

enum Feed {
    Event(KernelEvent),
    Tick,
    /// The feed lost events (overrun) or closed: start over.
    Lost(&'static str),
}

/// How often the source emits [`SourceEvent::Tick`].
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// rtnetlink, in the calling thread's network namespace.
pub struct RtnlSource {
    feed: Option<mpsc::UnboundedReceiver<Feed>>,
    /// Receive buffer for the sockets (tests shrink it to force overruns).
    rcvbuf: Option<usize>,
    /// Snapshots taken so far (1 = the first).
    pub snapshots: u64,
}

impl RtnlSource {
    pub fn new(rcvbuf: Option<usize>) -> Self {
        Self {
            feed: None,
            rcvbuf,
            snapshots: 0,
        }
    }

    /// Subscribe, then dump. Returns the snapshot; events flow into `feed`.
    async fn start(&mut self) -> Result<Vec<KernelEvent>, NetlinkError> {
        let (tx, rx) = mpsc::unbounded_channel();
        // 1. Subscribe.
        let (mut conn, _h, mut messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
            MulticastGroup::Neigh,
        ])
        .map_err(NetlinkError::Socket)?;
        set_rcvbuf(conn.socket_mut().socket_mut(), self.rcvbuf)?;
        tokio::spawn(conn);
        let events = tx.clone();
        tokio::spawn(async move {
            while let Some((msg, _)) = messages.next().await {
                let feed = match msg.payload {
                    NetlinkPayload::InnerMessage(m) => {
                        match process_message(&m, msg.header.flags) {
                            Some(ev) => Feed::Event(ev),
                            None => continue,
                        }
                    }
                    NetlinkPayload::Overrun(_) => Feed::Lost("rtnetlink overrun (ENOBUFS)"),
                    _ => continue,
                };
                let lost = matches!(feed, Feed::Lost(_));
                if events.send(feed).is_err() || lost {
                    return;
                }
            }
            let _ = events.send(Feed::Lost("rtnetlink socket closed"));
        });
        let ticks = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.tick().await;
            // Ends when the feed's receiver is dropped.
            while ticks.send(Feed::Tick).is_ok() {
                every.tick().await;
            }
        });
        let nh_sock = nexthop::subscribe(self.rcvbuf)?;
        let nh_tx = tx.clone();
        std::thread::Builder::new()
            .name("xdpgate-nexthop".into())
            .spawn(move || nexthop_events(nh_sock, nh_tx))
            .map_err(NetlinkError::Socket)?;
        self.feed = Some(rx);

        // 2. Dump, on a connection of its own.
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        let mut snapshot = Vec::new();
        let dump = |what, e: rtnetlink::Error| NetlinkError::Dump {
            what,
            reason: e.to_string(),
        };
        let mut links = handle.link().get().execute();
        while let Some(m) = links.try_next().await.map_err(|e| dump("links", e))? {
            snapshot.push(KernelEvent::Link(process_link(&m)));
        }
        snapshot.extend(
            tokio::task::spawn_blocking(nexthop::dump)
                .await
                .map_err(|e| NetlinkError::Request(e.to_string()))??,
        );
        let mut v4 = handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(m) = v4.try_next().await.map_err(|e| dump("IPv4 routes", e))? {
            snapshot.extend(process_route(&m).map(KernelEvent::Route));
        }
        let mut v6 = handle
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute();
        while let Some(m) = v6.try_next().await.map_err(|e| dump("IPv6 routes", e))? {
            snapshot.extend(process_route(&m).map(KernelEvent::Route));
        }
        let mut neigh = handle.neighbours().get().execute();
        while let Some(m) = neigh.try_next().await.map_err(|e| dump("neighbours", e))? {
            snapshot.extend(process_neighbour(&m, false));
        }
        self.snapshots += 1;
        Ok(snapshot)
    }
}

/// Receive buffer of the event sockets unless told otherwise: a full table
/// arrives at hundreds of thousands of routes per second, and an overrun
/// costs a complete dump.
pub const DEFAULT_RCVBUF: usize = 32 << 20;

/// Set the receive buffer: `SO_RCVBUFFORCE` (root may exceed rmem_max), or
/// exactly the size asked for (tests shrink it to force overruns).
pub fn set_rcvbuf(sock: &netlink_sys::Socket, asked: Option<usize>) -> Result<(), NetlinkError> {
    use std::os::fd::AsRawFd as _;
    let size = asked.unwrap_or(DEFAULT_RCVBUF) as libc::c_int;
    let opt = if asked.is_some() {
        libc::SO_RCVBUF
    } else {
        libc::SO_RCVBUFFORCE
    };
    // SAFETY: a valid socket fd and an int option.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(NetlinkError::Socket(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Blocking reader of nexthop events; ends on error or when the receiver
/// is gone.
fn nexthop_events(sock: netlink_sys::Socket, tx: mpsc::UnboundedSender<Feed>) {
    loop {
        let feed = match sock.recv_from_full() {
            Ok((buf, _)) => match nexthop::parse_datagram(&buf) {
                Ok((events, _)) => {
                    for ev in events {
                        if tx.send(Feed::Event(ev)).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Err(e) => {
                    warn!("nexthop event: {e}");
                    continue;
                }
            },
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                Feed::Lost("nexthop overrun (ENOBUFS)")
            }
            Err(_) => Feed::Lost("nexthop socket closed"),
        };
        let _ = tx.send(feed);
        return;
    }
}

impl Source for RtnlSource {
    async fn next(&mut self) -> Option<SourceEvent> {
        loop {
            if let Some(rx) = &mut self.feed {
                match rx.recv().await {
                    Some(Feed::Event(ev)) => return Some(SourceEvent::Event(ev)),
                    Some(Feed::Tick) => return Some(SourceEvent::Tick),
                    Some(Feed::Lost(why)) => {
                        info!("{why}: resubscribing and resynchronising");
                    }
                    None => info!("netlink feed ended: resubscribing"),
                }
                // Dropping the receiver stops the old readers.
                self.feed = None;
            }
            match self.start().await {
                Ok(snapshot) => return Some(SourceEvent::Snapshot(snapshot)),
                Err(e) => {
                    warn!("netlink resync failed ({e}); retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
}
