//! Many KeystoneAPIs at once: namespaces with the password Secret, concurrent creation, a watch that records
//! when each becomes Ready, and a pod driver for the whole cluster (the kubelet's part, as in the convergence
//! benchmark, for every namespace).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use keystone_types::{KeystoneAPI, conditions};
use test_support::keystone;
use test_support::pods::{Outcome, PodDriver};

/// Requests in flight when creating many objects.
pub const CONCURRENCY: usize = 16;

/// Creates `count` namespaces `<prefix>-<i>`, each with the seed's `osp-secret`.
pub async fn namespaces(client: &Client, prefix: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    stream::iter(names.clone())
        .map(|name| async move {
            let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &ns)
                .await?;
            keystone::create_osp_secret(client, &name, "admin-pw", "db-pw", "root-pw").await;
            anyhow::Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(names)
}

/// Where KeystoneAPI `i` of `count` goes: round-robin over the namespaces, named `keystone-<k>`.
pub fn placement(namespaces: &[String], i: usize) -> (String, String) {
    (
        namespaces[i % namespaces.len()].clone(),
        format!("keystone-{}", i / namespaces.len()),
    )
}

/// Creates `count` KeystoneAPIs with `spec` over `namespaces` ([`placement`]), [`CONCURRENCY`] at a time.
pub async fn create(client: &Client, namespaces: &[String], count: usize, spec: &Value) {
    stream::iter(0..count)
        .for_each_concurrent(CONCURRENCY, |i| async move {
            let (ns, name) = placement(namespaces, i);
            keystone::create(client, &ns, &name, spec.clone()).await;
        })
        .await;
}

/// Creates `count` KeystoneAPIs with `spec` over `namespaces` ([`create`]) while a watch times them
/// ([`ready_times`]): seconds until the last create call returned, and each one's seconds until Ready, sorted.
pub async fn converge(
    client: &Client,
    namespaces: &[String],
    count: usize,
    spec: &Value,
    timeout: Duration,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let t0 = Instant::now();
    let watch = tokio::spawn(ready_times(client.clone(), t0, count, timeout));
    create(client, namespaces, count, spec).await;
    let created = t0.elapsed().as_secs_f64();
    Ok((created, watch.await??))
}

/// Seconds from `t0` until each of `count` KeystoneAPIs (in any namespace) was first seen `Ready=True` for its
/// generation, by a watch; sorted. Fails after `timeout` with how many made it.
pub async fn ready_times(
    client: Client,
    t0: Instant,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<f64>> {
    let api: Api<KeystoneAPI> = Api::all(client);
    let mut seen: HashMap<String, f64> = HashMap::new();
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let deadline = tokio::time::Instant::from_std(t0) + timeout;
    while seen.len() < count {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let ks = match next {
            Ok(Some(Ok(ks))) => ks,
            Ok(Some(Err(_))) => continue,
            Ok(None) => anyhow::bail!("the KeystoneAPI watch ended"),
            Err(_) => anyhow::bail!("{} of {count} KeystoneAPIs Ready after {timeout:?}", seen.len()),
        };
        if keystone::condition_is(&ks, conditions::READY, "True").is_ok() {
            let key = format!("{}/{}", ks.namespace().unwrap_or_default(), ks.name_any());
            seen.entry(key).or_insert_with(|| t0.elapsed().as_secs_f64());
        }
    }
    let mut t: Vec<f64> = seen.into_values().collect();
    t.sort_by(f64::total_cmp);
    Ok(t)
}

/// Plays the kubelet for every namespace until aborted: every 100 ms, each unbound pod of a KeystoneAPI is
/// bound and finishes (Job pods) or becomes Running and Ready (API pods).
pub fn drive_pods(client: &Client) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        let lp = ListParams::default()
            .labels("app.kubernetes.io/component in (db-create,db-sync,bootstrap,credential-migrate,api)")
            .fields("spec.nodeName=");
        loop {
            if let Ok(list) = pods.list(&lp).await {
                stream::iter(list.items)
                    .filter(|p| std::future::ready(p.metadata.deletion_timestamp.is_none()))
                    .for_each_concurrent(8, |pod| {
                        let client = client.clone();
                        async move {
                            let driver = PodDriver::new(&client, &pod.namespace().unwrap_or_default());
                            let outcome = if pod
                                .labels()
                                .get("app.kubernetes.io/component")
                                .map(String::as_str)
                                == Some("api")
                            {
                                Outcome::Running { ready: true }
                            } else {
                                Outcome::Succeeded
                            };
                            // A pod deleted meanwhile is simply skipped. Once bound, a pod is no longer listed:
                            // its status is retried here.
                            if driver.bind(&pod.name_any()).await.is_ok() {
                                for _ in 0..5 {
                                    if driver.set_status(&pod.name_any(), outcome).await.is_ok() {
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                            }
                        }
                    })
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// `p`-th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
