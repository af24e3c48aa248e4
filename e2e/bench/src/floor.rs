//! The floor: a minimal client that creates the same objects the operator created for one KeystoneAPI
//! (taken from a converged namespace) in a fresh namespace, in the same dependency order (keys and config,
//! then db-create → db-sync → bootstrap, then the Deployment), waiting only for what the Jobs and the
//! Deployment report. It makes no decisions and writes no status: the time it takes is what any client
//! needs on this control plane, and the operator's convergence time is reported relative to it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use keystone_types::labels;
use test_support::pods::{Outcome, PodDriver};

/// The operator's children of one KeystoneAPI, stripped of what the server set.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    secrets: Vec<Value>,
    config_maps: Vec<Value>,
    service_accounts: Vec<Value>,
    services: Vec<Value>,
    /// In run order: db-create, db-sync, bootstrap.
    jobs: Vec<Value>,
    deployments: Vec<Value>,
    cron_jobs: Vec<Value>,
    pdbs: Vec<Value>,
}

/// The object as a client would write it: name, labels, annotations and spec/data only.
fn strip(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| matches!(k.as_str(), "name" | "labels" | "annotations"));
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

async fn list<K>(client: &Client, ns: &str, instance: &str) -> anyhow::Result<Vec<Value>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{}={instance}", labels::INSTANCE));
    Ok(api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|o| strip(serde_json::to_value(o).unwrap_or(Value::Null)))
        .collect())
}

impl Snapshot {
    /// The children of KeystoneAPI `instance` in `ns`.
    pub async fn take(client: &Client, ns: &str, instance: &str) -> anyhow::Result<Snapshot> {
        let mut services = list::<Service>(client, ns, instance).await?;
        for s in &mut services {
            if let Some(spec) = s.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
        }
        let mut jobs = list::<Job>(client, ns, instance).await?;
        for j in &mut jobs {
            if let Some(spec) = j.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("selector");
                spec.remove("manualSelector");
            }
            if let Some(l) = j
                .pointer_mut("/spec/template/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                l.retain(|k, _| !k.contains("controller-uid") && !k.contains("job-name"));
            }
        }
        let order = |j: &Value| match j
            .pointer("/metadata/labels")
            .and_then(|l| l.get(labels::COMPONENT))
            .and_then(Value::as_str)
        {
            Some("db-create") => 0,
            Some("db-sync") => 1,
            Some("bootstrap") => 2,
            _ => 3,
        };
        jobs.sort_by_key(order);
        jobs.retain(|j| order(j) < 3);
        Ok(Snapshot {
            secrets: list::<Secret>(client, ns, instance).await?,
            config_maps: list::<ConfigMap>(client, ns, instance).await?,
            service_accounts: list::<ServiceAccount>(client, ns, instance).await?,
            services,
            jobs,
            deployments: list::<Deployment>(client, ns, instance).await?,
            cron_jobs: list::<CronJob>(client, ns, instance).await?,
            pdbs: list::<PodDisruptionBudget>(client, ns, instance).await?,
        })
    }

    /// How many objects the floor creates.
    pub fn len(&self) -> usize {
        self.secrets.len()
            + self.config_maps.len()
            + self.service_accounts.len()
            + self.services.len()
            + self.jobs.len()
            + self.deployments.len()
            + self.cron_jobs.len()
            + self.pdbs.len()
    }
}

async fn create<K>(client: &Client, ns: &str, objects: &[Value]) -> anyhow::Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    for o in objects {
        let obj: K = serde_json::from_value(o.clone()).context("snapshot object")?;
        api.create(&PostParams::default(), &obj).await?;
    }
    Ok(())
}

/// Polls every 20 ms, driving the pods, until `done` holds (at most 60 s).
async fn until<F, Fut>(driver: &PodDriver, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        driver.drive_keystone(Outcome::Succeeded).await?;
        if done().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "floor: timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates the snapshot's objects in `ns` as a minimal client would; returns how long it took.
pub async fn converge(client: &Client, ns: &str, snapshot: &Snapshot) -> anyhow::Result<Duration> {
    let driver = PodDriver::new(client, ns);
    let t0 = Instant::now();
    create::<Secret>(client, ns, &snapshot.secrets).await?;
    create::<ConfigMap>(client, ns, &snapshot.config_maps).await?;
    create::<ServiceAccount>(client, ns, &snapshot.service_accounts).await?;
    create::<Service>(client, ns, &snapshot.services).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    for job in &snapshot.jobs {
        create::<Job>(client, ns, std::slice::from_ref(job)).await?;
        let name = job
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        until(&driver, &name, || async {
            let j = jobs.get(&name).await?;
            Ok(j.status.and_then(|s| s.succeeded).unwrap_or(0) > 0)
        })
        .await?;
    }
    create::<Deployment>(client, ns, &snapshot.deployments).await?;
    create::<CronJob>(client, ns, &snapshot.cron_jobs).await?;
    create::<PodDisruptionBudget>(client, ns, &snapshot.pdbs).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for d in &snapshot.deployments {
        let name = d
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        until(&driver, &name, || async {
            let d = deployments.get(&name).await?;
            let want = d.spec.replicas.unwrap_or(1);
            Ok(d.status.and_then(|s| s.ready_replicas).unwrap_or(0) == want)
        })
        .await?;
    }
    Ok(t0.elapsed())
}
