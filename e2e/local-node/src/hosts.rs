//! Name resolution inside pods, without a DNS server: each pod gets its own `/etc/hosts` (bind-mounted)
//! mapping every Service to a ready endpoint address, under the names a cluster DNS would answer
//! (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`). The short names are those of
//! the pod's own namespace. The file is rewritten in place (same inode) so the bind mount sees updates.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// (namespace, service) → address.
type Table = BTreeMap<(String, String), String>;

/// The table, refreshed at most once a second for the whole node.
static TABLE: Mutex<Option<(Instant, Table)>> = Mutex::new(None);

async fn table(client: &Client) -> Table {
    if let Ok(guard) = TABLE.lock()
        && let Some((at, t)) = guard.as_ref()
        && at.elapsed() < Duration::from_secs(1)
    {
        return t.clone();
    }
    let mut t = BTreeMap::new();
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    if let Ok(list) = slices.list(&ListParams::default()).await {
        for s in list {
            if let Some((svc, addr)) = ready_endpoint(&s) {
                t.entry((s.namespace().unwrap_or_default(), svc)).or_insert(addr);
            }
        }
    }
    if let Ok(mut guard) = TABLE.lock() {
        *guard = Some((Instant::now(), t.clone()));
    }
    t
}

/// The Service an EndpointSlice belongs to and the address of its first ready endpoint (an endpoint without
/// a `ready` condition counts as ready, as the API defines).
pub fn ready_endpoint(slice: &EndpointSlice) -> Option<(String, String)> {
    let svc = slice.labels().get("kubernetes.io/service-name")?.clone();
    let ready = slice
        .endpoints
        .iter()
        .flatten()
        .find(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))?;
    Some((svc, ready.addresses.first()?.clone()))
}

/// Writes the pod's hosts file.
pub async fn write(path: &Path, client: &Client, pod: &Pod, pod_ip: &str) -> std::io::Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let mut out = String::from("# Written by keystone-local-node: Services with a ready endpoint.\n");
    out.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str(&format!("{pod_ip}\t{}\n", pod.name_any()));
    for ((svc_ns, svc), addr) in table(client).await {
        let mut names = vec![
            format!("{svc}.{svc_ns}.svc.cluster.local"),
            format!("{svc}.{svc_ns}.svc"),
            format!("{svc}.{svc_ns}"),
        ];
        if svc_ns == ns {
            names.push(svc.clone());
        }
        out.push_str(&format!("{addr}\t{}\n", names.join(" ")));
    }
    if std::fs::read_to_string(path).ok().as_deref() != Some(out.as_str()) {
        std::fs::write(path, out)?;
    }
    Ok(())
}
