//! This controller's rows: `ConfigReady`, `ServiceReady`, `DeploymentReady`, `NetworkAttachmentsReady`, the
//! summary `Ready`, and `status.api`, `apiEndpoints`, `readyCount`, `networkAttachments`. Written by server-side
//! apply under this controller's field manager, only when something changed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;

use keystone_types::conditions::{self, DEPLOYMENT_READY, NETWORK_ATTACHMENTS_READY, READY};
use keystone_types::pod_status::{pod_ready, stuck_pods};
use keystone_types::v1beta1::{ApiEndpoints, ApiStatus};
use keystone_types::{KeystoneAPI, KeystoneAPIStatus};
use operator_common::backoff::FailedCall;
use operator_common::conditions::{Desired, reconcile};

use crate::gate::{Gate, reasons};
use crate::{CONTROLLER, Error};

/// Multus's per-pod report of its interfaces.
const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// `DeploymentReady` from the gate and the Deployment's status; when not all replicas are ready, the pods that
/// cannot start are named with the kubelet's reason.
pub fn deployment_condition(
    ks: &KeystoneAPI,
    gate: &Gate,
    d: Option<&Deployment>,
    config_hash: Option<&str>,
    pods: &[Pod],
    now: Timestamp,
) -> Desired {
    if let Some((reason, message)) = &gate.waiting {
        return Desired::not_ok(DEPLOYMENT_READY, *reason, message.clone());
    }
    let Some(d) = d else {
        return Desired::not_ok(DEPLOYMENT_READY, reasons::ROLLING_OUT, "creating the Deployment");
    };
    let want = ks.spec.replicas;
    let st = d.status.clone().unwrap_or_default();
    let observed = st.observed_generation >= d.metadata.generation;
    let template_hash = crate::build::deployment::current_inputs(d).map(|i| i.config_hash);
    let current_config = config_hash.is_none() || template_hash.as_deref() == config_hash;
    let (ready, updated, available) = (
        st.ready_replicas.unwrap_or(0),
        st.updated_replicas.unwrap_or(0),
        st.available_replicas.unwrap_or(0),
    );
    let total = st.replicas.unwrap_or(0);
    if observed && current_config && ready == want && updated == want && available == want && total == want {
        Desired::ok(
            DEPLOYMENT_READY,
            reasons::AVAILABLE,
            format!("{ready}/{want} replicas ready"),
        )
    } else {
        let progress = format!("{ready}/{want} replicas ready, {updated} updated, {total} in total");
        let stuck = stuck_pods(pods, now);
        if stuck.is_empty() {
            Desired::not_ok(DEPLOYMENT_READY, reasons::ROLLING_OUT, progress)
        } else {
            Desired::not_ok(
                DEPLOYMENT_READY,
                reasons::PODS_NOT_STARTING,
                format!("{progress}; pods not starting: {}", stuck.join("; ")),
            )
        }
    }
}

/// `NetworkAttachmentsReady` and the IPs per network.
pub fn network_condition(
    ks: &KeystoneAPI,
    missing: &[String],
    pods: &[Pod],
) -> (Desired, Option<BTreeMap<String, Vec<String>>>) {
    let wanted = &ks.spec.network_attachments;
    if wanted.is_empty() {
        return (
            Desired::ok(
                NETWORK_ATTACHMENTS_READY,
                "NoneRequested",
                "no network attachments requested",
            ),
            None,
        );
    }
    if !missing.is_empty() {
        return (
            Desired::not_ok(
                NETWORK_ATTACHMENTS_READY,
                "NetworkAttachmentDefinitionMissing",
                format!(
                    "NetworkAttachmentDefinition {} not found in this namespace (spec.networkAttachments; is Multus installed?)",
                    missing.join(", ")
                ),
            ),
            None,
        );
    }
    let ns = ks.metadata.namespace.clone().unwrap_or_default();
    let mut ips: BTreeMap<String, Vec<String>> = wanted.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut lacking = Vec::new();
    for pod in pods.iter().filter(|p| pod_ready(p)) {
        let status: Vec<serde_json::Value> = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NETWORK_STATUS))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        for net in wanted {
            let full = format!("{ns}/{net}");
            let found: Vec<String> = status
                .iter()
                .filter(|s| s["name"] == full.as_str() || s["name"] == net.as_str())
                .flat_map(|s| s["ips"].as_array().cloned().unwrap_or_default())
                .filter_map(|ip| ip.as_str().map(str::to_owned))
                .collect();
            if found.is_empty() {
                lacking.push(format!("{}/{net}", pod.metadata.name.clone().unwrap_or_default()));
            }
            if let Some(list) = ips.get_mut(net) {
                list.extend(found);
            }
        }
    }
    for list in ips.values_mut() {
        list.sort();
    }
    let ready_pods = pods.iter().filter(|p| pod_ready(p)).count();
    let c = if ready_pods == 0 && ks.spec.replicas > 0 {
        Desired::not_ok(NETWORK_ATTACHMENTS_READY, "AddressMissing", "no ready pod yet")
    } else if lacking.is_empty() {
        Desired::ok(
            NETWORK_ATTACHMENTS_READY,
            "Attached",
            "every ready pod has an address on each requested network",
        )
    } else {
        Desired::not_ok(
            NETWORK_ATTACHMENTS_READY,
            "AddressMissing",
            format!("no address yet on: {}", lacking.join(", ")),
        )
    };
    (c, Some(ips))
}

/// `Ready`: every other condition of the contract True for the current generation. `own` are this run's rows
/// (the status on `ks` may still hold their previous values).
pub fn ready_condition(ks: &KeystoneAPI, own: &[Desired]) -> Desired {
    let current = ks
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut pending = Vec::new();
    for t in conditions::ready_inputs() {
        if let Some(d) = own.iter().find(|d| d.type_ == t) {
            if !d.status {
                pending.push(format!("{t} ({})", d.reason));
            }
            continue;
        }
        match current.iter().find(|c| c.type_ == t) {
            Some(c) if c.status == "True" && c.observed_generation == ks.metadata.generation => {}
            Some(c) if c.status == "True" => {
                pending.push(format!("{t} (not yet confirmed for this generation)"))
            }
            Some(c) => pending.push(format!("{t} ({})", c.reason)),
            None => pending.push(format!("{t} (not reported)")),
        }
    }
    if pending.is_empty() {
        Desired::ok(READY, "AllReady", "Keystone is ready")
    } else {
        Desired::not_ok(READY, "Waiting", format!("waiting for {}", pending.join(", ")))
    }
}

/// Everything this controller writes into the status.
#[derive(Debug, Clone)]
pub struct Report {
    /// Conditions of this controller, `Ready` excluded (it is computed from them).
    pub conditions: Vec<Desired>,
    /// `status.api`.
    pub api: ApiStatus,
    /// `apiEndpoints`.
    pub endpoints: ApiEndpoints,
    /// `readyCount`.
    pub ready_count: i32,
    /// `networkAttachments`.
    pub networks: Option<BTreeMap<String, Vec<String>>>,
}

/// Applies the report when it changes the status.
pub async fn write(api: &Api<KeystoneAPI>, ks: &KeystoneAPI, report: Report) -> Result<(), Error> {
    let mut wanted = report.conditions.clone();
    wanted.push(ready_condition(ks, &report.conditions));
    let current = ks.status.clone().unwrap_or_default();
    let (conds, changed) = reconcile(
        &current.conditions.clone().unwrap_or_default(),
        &wanted,
        ks.metadata.generation,
        Timestamp::now(),
    );
    let status = KeystoneAPIStatus {
        conditions: Some(conds),
        api: Some(report.api),
        api_endpoints: Some(report.endpoints),
        ready_count: Some(report.ready_count),
        network_attachments: report.networks,
        ..Default::default()
    };
    let changed = changed
        || current.api != status.api
        || current.api_endpoints != status.api_endpoints
        || current.ready_count != status.ready_count
        || current.network_attachments != status.network_attachments;
    if !changed {
        return Ok(());
    }
    let name = ks.metadata.name.clone().unwrap_or_default();
    operator_common::apply::apply_status(api, &name, CONTROLLER, &status)
        .await
        .map(|_| ())
        .map_err(|e| FailedCall::status_write(&name)(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": "2026-12-04T10:00:00Z"},
            "status": status
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"phase": "Pending", "startTime": "2026-12-04T10:00:00Z", "containerStatuses": [{
            "name": "keystone-api", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}}]})
    }

    fn at(hms: &str) -> Timestamp {
        format!("2026-12-04T{hms}Z")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pods_that_cannot_start_are_named_with_the_kubelets_reason() {
        let pods = [
            pod(
                "a",
                waiting("ImagePullBackOff", "Back-off pulling image \"keystone:typo\""),
            ),
            pod("b", waiting("ContainerCreating", "")),
            pod(
                "c",
                serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
            ),
            pod(
                "d",
                serde_json::json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
            ),
        ];
        // Two minutes in: creating containers is normal yet.
        let early = stuck_pods(&pods, at("10:02:00"));
        assert_eq!(
            early,
            [
                "a: ImagePullBackOff: Back-off pulling image \"keystone:typo\"",
                "c: Unschedulable: 0/3 nodes are available"
            ]
        );
        // Past the deadline it is reported too, with a text that does not change every reconcile.
        let late = stuck_pods(&pods, at("10:06:00"));
        assert_eq!(late.len(), 3, "{late:?}");
        assert_eq!(late[1], "b: ContainerCreating for more than 300s");
        assert_eq!(late, stuck_pods(&pods, at("10:09:00")));
    }
}
