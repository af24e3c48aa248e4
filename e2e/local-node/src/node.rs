//! The Node object and the loop that binds pods (scheduler stand-in, only in the namespaces given) and runs
//! the pods bound to this node, one task per pod.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::pod::{self, NodeConfig};

/// Creates or updates the Node object: Ready, its address, capacity, labels.
pub async fn register(client: &Client, cfg: &NodeConfig) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.name, "labels": {
            "kubernetes.io/hostname": cfg.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.keystone.openstack.org/local": "true"}},
    });
    nodes
        .patch(
            &cfg.name,
            &PatchParams::apply("keystone-local-node").force(),
            &Patch::Apply(&node),
        )
        .await?;
    heartbeat(client, cfg).await
}

/// Writes the Node's status (Ready, addresses, capacity) with a fresh heartbeat time.
pub async fn heartbeat(client: &Client, cfg: &NodeConfig) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now().to_string();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "keystone-local-node is running", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": cfg.bridge.host.to_string()},
                      {"type": "Hostname", "address": cfg.name}],
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "240"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "240"},
        "nodeInfo": {"kubeletVersion": "keystone-local-node", "operatingSystem": "linux", "architecture": "amd64",
            "containerRuntimeVersion": "local-node://processes", "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
            "machineID": "", "systemUUID": "", "bootID": ""},
    }});
    nodes
        .patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

async fn bind(client: &Client, pod: &Pod, node: &str) -> kube::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod.name_any(), "uid": pod.uid()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<serde_json::Value, serde_json::Value>(
        "binding",
        &pod.name_any(),
        &PostParams::default(),
        &binding,
    )
    .await?;
    Ok(())
}

struct Running {
    updates: watch::Sender<Option<Pod>>,
}

/// Runs until `stop` completes: watches pods, binds the schedulable ones, runs the bound ones.
pub async fn run(
    client: Client,
    cfg: Arc<NodeConfig>,
    schedule_namespaces: BTreeSet<String>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut events = watcher(pods, watcher::Config::default()).boxed();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut slots: BTreeSet<u8> = BTreeSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, u8)>();
    let mut seen_in_list: BTreeSet<String> = BTreeSet::new();
    let mut beat = tokio::time::interval(Duration::from_secs(10));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = beat.tick() => {
                if let Err(error) = heartbeat(&client, &cfg).await {
                    tracing::warn!(%error, "node heartbeat failed");
                }
            }
            Some((uid, slot)) = done_rx.recv() => {
                running.remove(&uid);
                slots.remove(&slot);
            }
            event = events.next() => {
                let Some(event) = event else { break };
                let event = match event {
                    Ok(e) => e,
                    Err(error) => { tracing::warn!(%error, "pod watch error"); continue; }
                };
                let apply = |p: Pod| -> Option<Pod> { Some(p) };
                let (pod, deleted) = match event {
                    watcher::Event::Init => { seen_in_list.clear(); continue; }
                    watcher::Event::InitApply(p) => { seen_in_list.insert(p.uid().unwrap_or_default()); (apply(p), false) }
                    watcher::Event::InitDone => {
                        // Pods that vanished while the watch was down are gone.
                        for (uid, r) in &running {
                            if !seen_in_list.contains(uid) { let _ = r.updates.send(None); }
                        }
                        continue;
                    }
                    watcher::Event::Apply(p) => (apply(p), false),
                    watcher::Event::Delete(p) => (Some(p), true),
                };
                let Some(pod) = pod else { continue };
                let uid = pod.uid().unwrap_or_default();
                let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                if deleted {
                    if let Some(r) = running.get(&uid) { let _ = r.updates.send(None); }
                    continue;
                }
                match node_name {
                    Some(n) if n == cfg.name => {
                        if let Some(r) = running.get(&uid) {
                            let _ = r.updates.send(Some(pod));
                        } else if is_finished(&pod) && pod.metadata.deletion_timestamp.is_none() {
                            // Finished before a node restart: nothing to run.
                        } else {
                            let Some(slot) = (10..=250).find(|s| !slots.contains(s)) else {
                                tracing::error!("no free pod address on the node");
                                continue;
                            };
                            slots.insert(slot);
                            let (tx, rx) = watch::channel(Some(pod.clone()));
                            let done = done_tx.clone();
                            let (client, cfg, uid2) = (client.clone(), cfg.clone(), uid.clone());
                            tokio::spawn(async move {
                                pod::run(client, cfg, pod, slot, rx).await;
                                let _ = done.send((uid2, slot));
                            });
                            running.insert(uid, Running { updates: tx });
                        }
                    }
                    None if schedule_namespaces.contains(&pod.namespace().unwrap_or_default())
                        && pod.metadata.deletion_timestamp.is_none() =>
                    {
                        match bind(&client, &pod, &cfg.name).await {
                            Ok(()) => tracing::info!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), "bound"),
                            Err(error) => tracing::warn!(%error, pod = %pod.name_any(), "cannot bind"),
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // Stop every pod's processes and sandbox; the pod objects stay (as with a stopped kubelet).
    for r in running.values() {
        let _ = r.updates.send(None);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some((uid, _))) => {
                running.remove(&uid);
            }
            _ => break,
        }
    }
    Ok(())
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}
