//! The other gateway instances that hold queries, by their tag in held query ids: where a poll of
//! a query another instance holds is forwarded (that instance's `proxy.advertise_url`, announced
//! in the shared database and read back by every instance's config sync).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use tracing::warn;

use crate::snapshot::Snapshot;

/// Tag → that instance's proxy listener, as an upstream peer.
#[derive(Default)]
pub struct Peers {
    map: ArcSwap<HashMap<[u8; 4], Arc<HttpPeer>>>,
}

impl Peers {
    /// The instance holding queries with this tag, other than this one.
    pub fn get(&self, tag: [u8; 4]) -> Option<Arc<HttpPeer>> {
        self.map.load().get(&tag).cloned()
    }

    /// Replace the map with these instances (tag, URL), this instance's own tag left out; an
    /// instance whose URL does not resolve is left out (and logged).
    pub async fn refresh(&self, rows: Vec<(String, String)>, own: [u8; 4], snap: &Snapshot) {
        let mut map = HashMap::new();
        for (tag, url) in rows {
            let Ok(tag) = <[u8; 4]>::try_from(tag.as_bytes()) else {
                continue;
            };
            if tag == own {
                continue;
            }
            match peer(&url, snap).await {
                Some(p) => {
                    map.insert(tag, Arc::new(p));
                }
                None => warn!(url, "a gateway instance's advertise_url does not resolve"),
            }
        }
        self.map.store(Arc::new(map));
    }
}

async fn peer(url: &str, snap: &Snapshot) -> Option<HttpPeer> {
    let u = url::Url::parse(url).ok()?;
    let tls = u.scheme() == "https";
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let port = u.port_or_known_default()?;
    let addr: SocketAddr = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let mut p = HttpPeer::new(addr, tls, host.to_string());
    if tls {
        p.options.ca = snap.upstream_tls.ca.clone();
        p.client_cert_key = snap.upstream_tls.client.clone();
    }
    p.options.connection_timeout = Some(snap.config.proxy.connect_timeout.get());
    p.options.read_timeout = Some(snap.config.proxy.read_timeout.get());
    Some(p)
}
