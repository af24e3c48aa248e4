//! The API Deployment, its PodDisruptionBudget and ServiceAccount. The container runs the image's httpd on the
//! rendered httpd.conf; Keystone reads its configuration where it is mounted (`keystone_types::pod`), as
//! uid/gid 42425 without privilege escalation. The key
//! Secrets are mounted whole (no subPath) so the kubelet swaps rotated keys in place: a key rotation is not a
//! rollout input. The pod template carries a hash of what should restart pods (config and image).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, HTTPGetAction, Lifecycle, LifecycleHandler, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, ServiceAccount, SleepAction, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use keystone_types::{KeystoneAPI, labels, names, pod};

use super::child_meta;
use super::service::PORT;

/// Pod-template annotation: hash of every input that should restart pods.
pub const INPUTS_HASH: &str = "keystone.openstack.org/inputs-hash";
/// Pod-template annotation: the config hash the pods run with.
pub const CONFIG_HASH: &str = "keystone.openstack.org/config-hash";
/// Seconds a deleted API pod keeps serving before httpd gets SIGTERM: the pod leaves the Service's ready
/// endpoints when it is marked for deletion, and kube-proxies and clients need a moment to stop sending to it.
/// Without the pause, a rollout cuts off requests that were routed to the old pod just before it went.
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Multus annotation listing the networks to attach.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// What the pods run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInputs {
    /// Container image.
    pub image: String,
    /// ConfigMap name.
    pub config_map: String,
    /// Config Secret name.
    pub config_secret: String,
    /// Config hash.
    pub config_hash: String,
}

fn probe(period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/v3".into()),
            port: IntOrString::Int(PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The ServiceAccount the pods run as (no token is mounted).
pub fn service_account(ks: &KeystoneAPI) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(ks, names::service_account(&ks.name_any()), labels::component::API),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// The API Deployment.
pub fn deployment(ks: &KeystoneAPI, inputs: &PodInputs) -> Deployment {
    let instance = ks.name_any();
    let selector = labels::selector_labels(&instance, labels::component::API);
    let inputs_hash = {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(format!("{}\0{}", inputs.config_hash, inputs.image));
        d.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut annotations = BTreeMap::from([
        (INPUTS_HASH.to_owned(), inputs_hash),
        (CONFIG_HASH.to_owned(), inputs.config_hash.clone()),
    ]);
    if !ks.spec.network_attachments.is_empty() {
        annotations.insert(MULTUS_NETWORKS.into(), ks.spec.network_attachments.join(","));
    }
    let mut pod_labels = labels::child_labels(
        &instance,
        labels::component::API,
        keystone_types::conditions::Controller::Api,
    );
    pod_labels.extend(selector.clone());

    let domain_files = pod::domain_files(ks.spec.default_config_overwrite.keys());
    let container = Container {
        name: "keystone-api".into(),
        image: Some(inputs.image.clone()),
        command: Some(vec![
            "/usr/sbin/httpd".into(),
            "-DFOREGROUND".into(),
            "-f".into(),
            format!("{}/httpd.conf", pod::CONFIG_DIR),
        ]),
        env: Some(vec![pod::config_files_env()]),
        ports: Some(vec![ContainerPort {
            name: Some("keystone-api".into()),
            container_port: PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        startup_probe: Some(probe(5, 5, 60)),
        readiness_probe: Some(probe(10, 5, 3)),
        liveness_probe: Some(probe(30, 10, 3)),
        resources: ks.spec.resources.clone(),
        security_context: Some(pod::container_security_context()),
        volume_mounts: Some(pod::mounts(&domain_files)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let volumes = pod::volumes(
        &instance,
        &inputs.config_map,
        &inputs.config_secret,
        &domain_files,
    );
    let anti_affinity = Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector.clone()),
                        ..Default::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Deployment {
        metadata: child_meta(ks, names::deployment(&instance), labels::component::API),
        spec: DeploymentSpec {
            replicas: Some(ks.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            // Surge first: a rollout never drops below the requested number of ready pods.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::service_account(&instance)),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(pod::pod_security_context()),
                    affinity: Some(anti_affinity),
                    node_selector: ks.spec.node_selector.clone(),
                    tolerations: ks.spec.tolerations.clone(),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A PodDisruptionBudget keeping all but one pod up during voluntary disruptions (only with more than one replica).
pub fn pod_disruption_budget(ks: &KeystoneAPI) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(ks, names::deployment(&ks.name_any()), labels::component::API),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector_labels(&ks.name_any(), labels::component::API)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod inputs a Deployment currently runs with (to keep a serving Deployment on its image while a gate is
/// closed).
pub fn current_inputs(d: &Deployment) -> Option<PodInputs> {
    let t = &d.spec.template;
    let spec = t.spec.as_ref()?;
    let image = spec.containers.first()?.image.clone()?;
    let vols = spec.volumes.as_ref()?;
    let config_map = vols
        .iter()
        .find(|v| v.name == "config")?
        .config_map
        .as_ref()?
        .name
        .clone();
    let config_secret = vols
        .iter()
        .find(|v| v.name == "config-secret")?
        .secret
        .as_ref()?
        .secret_name
        .clone()?;
    let config_hash = t
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH)?
        .clone();
    Some(PodInputs {
        image,
        config_map,
        config_secret,
        config_hash,
    })
}
