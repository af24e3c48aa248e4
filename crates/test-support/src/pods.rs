//! The pod driver: plays the kubelet for tests on the embedded control plane, which has none. It binds pods
//! and writes their status (phase, readiness, IPs, the Multus `network-status` annotation), so that the real
//! Job, ReplicaSet and Deployment controllers in kube-controller-manager compute their own status from it.
//!
//! Pod IPs written here are status values only: nothing ever connects to them.

use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Node name the driver binds pods to.
pub const NODE_NAME: &str = "test-node";

/// The Multus annotation with each attachment's IPs.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

/// What a driven pod should end up as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Running, with Ready = the given value.
    Running {
        /// Whether the Ready condition is True.
        ready: bool,
    },
    /// Finished with exit code 0.
    Succeeded,
    /// Finished with the given non-zero exit code.
    Failed {
        /// Container exit code.
        exit_code: i32,
    },
    /// Pending, every container waiting with this kubelet reason (e.g. `ImagePullBackOff`).
    Waiting {
        /// The waiting reason.
        reason: &'static str,
    },
}

/// Drives pods of one namespace.
#[derive(Clone)]
pub struct PodDriver {
    pods: Api<Pod>,
}

static NEXT_IP: AtomicU32 = AtomicU32::new(1);

fn next_ip() -> String {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
    format!("10.244.{}.{}", (n >> 8) & 0xff, n & 0xff)
}

impl PodDriver {
    /// A driver for `namespace`.
    pub fn new(client: &Client, namespace: &str) -> Self {
        Self {
            pods: Api::namespaced(client.clone(), namespace),
        }
    }

    /// Binds the pod to [`NODE_NAME`] through the `binding` subresource, as a scheduler would.
    pub async fn bind(&self, pod: &str) -> kube::Result<()> {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": { "name": pod },
            "target": { "apiVersion": "v1", "kind": "Node", "name": NODE_NAME },
        });
        self.pods
            .create_subresource::<serde_json::Value, serde_json::Value>(
                "binding",
                pod,
                &PostParams::default(),
                &binding,
            )
            .await?;
        Ok(())
    }

    /// Writes the pod's status for `outcome`, the way a kubelet reports it.
    pub async fn set_status(&self, pod: &str, outcome: Outcome) -> kube::Result<Pod> {
        let current = self.pods.get(pod).await?;
        let now = Timestamp::now().to_string();
        let ip = current
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_else(next_ip);
        let containers: Vec<String> = current
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let image_of = |name: &str| {
            current
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == name))
                .and_then(|c| c.image.clone())
                .unwrap_or_default()
        };
        let (phase, ready, state) = match outcome {
            Outcome::Running { ready } => ("Running", ready, json!({ "running": { "startedAt": now } })),
            Outcome::Succeeded => (
                "Succeeded",
                false,
                json!({ "terminated": { "exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now } }),
            ),
            Outcome::Failed { exit_code } => (
                "Failed",
                false,
                json!({ "terminated": { "exitCode": exit_code, "reason": "Error", "startedAt": now, "finishedAt": now } }),
            ),
            Outcome::Waiting { reason } => (
                "Pending",
                false,
                json!({ "waiting": { "reason": reason, "message": format!("simulated {reason}") } }),
            ),
        };
        let statuses: Vec<_> = containers
            .iter()
            .map(|c| {
                let mut state = state.clone();
                // The database Job's script reports what it found in its termination message; a new
                // database holds no encrypted credentials.
                if c == "db-create" && outcome == Outcome::Succeeded {
                    state["terminated"]["message"] = json!("storedCredentials=0");
                }
                json!({
                    "name": c, "image": image_of(c), "imageID": "", "restartCount": 0,
                    "ready": ready, "started": phase == "Running", "state": state,
                })
            })
            .collect();
        let cond = |t: &str, ok: bool| json!({ "type": t, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now });
        let status = json!({
            "status": {
                "phase": phase,
                "hostIP": "10.244.255.1",
                "podIP": ip,
                "podIPs": [{ "ip": ip }],
                "startTime": now,
                "conditions": [
                    cond("PodScheduled", true), cond("Initialized", true),
                    cond("ContainersReady", ready), cond("Ready", ready),
                ],
                "containerStatuses": statuses,
            }
        });
        self.pods
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
    }

    /// Writes the Multus `network-status` annotation: the default network plus one entry per attachment.
    pub async fn set_network_status(&self, pod: &str, attachments: &[(&str, &str)]) -> kube::Result<Pod> {
        let current = self.pods.get(pod).await?;
        let ns = current.namespace().unwrap_or_default();
        let mut networks = vec![json!({
            "name": "ovn-kubernetes", "interface": "eth0", "default": true,
            "ips": [current.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default()],
        })];
        for (i, (nad, ip)) in attachments.iter().enumerate() {
            networks.push(
                json!({ "name": format!("{ns}/{nad}"), "interface": format!("net{}", i + 1), "ips": [ip] }),
            );
        }
        let value = serde_json::to_string(&networks).map_err(kube::Error::SerdeError)?;
        let patch = json!({ "metadata": { "annotations": { NETWORK_STATUS_ANNOTATION: value } } });
        self.pods
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    }

    /// Finishes the deletion of terminating pods, as a kubelet does once their containers stopped.
    pub async fn reap_terminating(&self) -> kube::Result<usize> {
        let mut n = 0;
        for pod in self.pods.list(&ListParams::default()).await? {
            if pod.metadata.deletion_timestamp.is_some() {
                let dp = kube::api::DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                };
                match self.pods.delete(&pod.name_any(), &dp).await {
                    Ok(_) => n += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }

    /// Binds every unbound pod matching `selector` and gives it `outcome`; returns the pods it drove.
    pub async fn drive_pending(&self, selector: &str, outcome: Outcome) -> kube::Result<Vec<String>> {
        let mut driven = Vec::new();
        for pod in self.pods.list(&ListParams::default().labels(selector)).await? {
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            if bound || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = pod.name_any();
            self.bind(&name).await?;
            self.set_status(&name, outcome).await?;
            driven.push(name);
        }
        Ok(driven)
    }

    /// One pass of playing the kubelet for a KeystoneAPI: the db-create, db-sync, bootstrap and
    /// credential-migrate Job pods get `job_outcome`, the API pods become Running and Ready.
    pub async fn drive_keystone(&self, job_outcome: Outcome) -> kube::Result<()> {
        for component in ["db-create", "db-sync", "bootstrap", "credential-migrate"] {
            self.drive_pending(&format!("app.kubernetes.io/component={component}"), job_outcome)
                .await?;
        }
        self.drive_pending(
            "app.kubernetes.io/component=api",
            Outcome::Running { ready: true },
        )
        .await?;
        Ok(())
    }
}
