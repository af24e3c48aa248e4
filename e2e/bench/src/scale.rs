//! Scale: N KeystoneAPIs created at once across up to 50 namespaces, each N on a fresh control plane with fresh
//! controllers (time until all are Ready, CPU seconds and peak RSS per controller); and the cost of objects that
//! are not ours (10,000 Secrets and ConfigMaps in the watched namespaces) while running and at start-up.

use std::time::{Duration, Instant};

use futures::{TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::fleet::{self, percentile};
use crate::operator::Operator;
use crate::procstat::{Usage, mib};

/// How long after convergence memory is read again (the steady state, once start-up buffers are released).
const SETTLE: Duration = Duration::from_secs(20);

fn usages(op: &Operator) -> anyhow::Result<Vec<Usage>> {
    op.replicas.iter().map(|r| r.usage()).collect()
}

/// Per-controller cells: `CPU s / peak MiB / settled MiB`.
fn cells(op: &Operator, before: &[Usage], peak: &[Usage], settled: &[Usage]) -> (String, Value) {
    let mut md = Vec::new();
    let mut js = serde_json::Map::new();
    for (i, r) in op.replicas.iter().enumerate() {
        let cpu = peak[i].cpu_seconds - before[i].cpu_seconds;
        md.push(format!(
            "{:.2} s / {:.1} MiB / {:.1} MiB",
            cpu,
            mib(settled[i].peak_rss_bytes),
            mib(settled[i].rss_bytes)
        ));
        js.insert(
            r.controller.to_owned(),
            json!({ "cpu_seconds": cpu, "peak_rss_bytes": settled[i].peak_rss_bytes, "rss_bytes": settled[i].rss_bytes }),
        );
    }
    (md.join(" | "), Value::Object(js))
}

/// The scale runs, one fresh control plane per size.
pub async fn run(
    bin_dir: &std::path::Path,
    sizes: &[usize],
    max_namespaces: usize,
) -> anyhow::Result<(String, Value)> {
    let mut md = String::from(
        "## Scale\n\nN KeystoneAPIs created at once (16 requests in flight) across min(N, namespaces) namespaces, \
         on a fresh control plane with fresh controllers. Per controller: CPU seconds from the first create until \
         all are Ready / peak RSS of the process / RSS 20 s later. Then every controller is restarted with the N \
         KeystoneAPIs in place (what an upgrade or a failover does): peak and settled RSS of the new processes, \
         the state they keep rather than what a burst left behind.\n\n\
         | KeystoneAPIs | namespaces | created in | all Ready | p50 Ready | api | fernet | db | control plane CPU | \
         restarted api / fernet / db: peak, RSS |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    for &n in sizes {
        let mut op = Operator::install("bench-scale", false, bin_dir).await?;
        op.start_all().await?;
        let nss = fleet::namespaces(&op.admin, "scale", n.min(max_namespaces)).await?;
        let driver = fleet::drive_pods(&op.admin);
        let before = usages(&op)?;
        let cp0 = op.control_plane_cpu();
        let timeout = Duration::from_secs(120 + 4 * n as u64);
        let (created, times) = fleet::converge(&op.admin, &nss, n, &json!({"replicas": 1}), timeout).await?;
        let converged = usages(&op)?;
        let cp = op.control_plane_cpu() - cp0;
        tokio::time::sleep(SETTLE).await;
        let settled = usages(&op)?;
        let (c, js) = cells(&op, &before, &converged, &settled);
        let restarted = restart(&mut op).await?;
        driver.abort();
        let restarted_md = restarted
            .iter()
            .map(|(_, u)| format!("{:.1}, {:.1} MiB", mib(u.peak_rss_bytes), mib(u.rss_bytes)))
            .collect::<Vec<_>>()
            .join(" / ");
        let all = times.last().copied().unwrap_or(0.0);
        eprintln!("bench: scale {n}: all Ready in {all:.1} s");
        md.push_str(&format!(
            "| {n} | {} | {created:.2} s | {all:.1} s | {:.1} s | {c} | {cp:.1} s | {restarted_md} |\n",
            nss.len(),
            percentile(&times, 50.0)
        ));
        rows.push(json!({
            "keystoneapis": n, "namespaces": nss.len(), "created_seconds": created,
            "all_ready_seconds": all, "p50_ready_seconds": percentile(&times, 50.0),
            "controllers": js, "control_plane_cpu_seconds": cp,
            "restarted": restarted.iter().map(|(ready, u)| json!({ "ready_seconds": ready, "usage": u })).collect::<Vec<_>>(),
        }));
        op.uninstall().await;
    }
    Ok((md, Value::Array(rows)))
}

/// Restarts every controller (graceful stop, fresh start) and measures the start-up: seconds until each answers
/// /readyz, CPU seconds and peak RSS over its first [`SETTLE`], RSS after it.
async fn restart(op: &mut Operator) -> anyhow::Result<Vec<(f64, Usage)>> {
    op.stop_all().await;
    let mut ready = Vec::new();
    for c in crate::operator::CONTROLLERS {
        let t = Instant::now();
        op.start(c).await?;
        ready.push(t.elapsed().as_secs_f64());
    }
    tokio::time::sleep(SETTLE).await;
    Ok(ready.into_iter().zip(usages(op)?).collect())
}

/// Creates `count` unrelated objects, half Secrets and half ConfigMaps, round-robin over `namespaces`: 2 KiB of
/// data and a 1 KiB `last-applied-configuration` annotation each, as `kubectl apply` leaves them.
async fn unrelated_objects(client: &kube::Client, namespaces: &[String], count: usize) -> anyhow::Result<()> {
    let data = "x".repeat(2048);
    let annotation = "y".repeat(1024);
    stream::iter((0..count).map(anyhow::Ok))
        .try_for_each_concurrent(fleet::CONCURRENCY, |i| {
            let (data, annotation) = (&data, &annotation);
            async move {
                let ns = &namespaces[i % namespaces.len()];
                let meta = json!({
                    "name": format!("unrelated-{i}"),
                    "labels": { "app": "unrelated" },
                    "annotations": { "kubectl.kubernetes.io/last-applied-configuration": annotation },
                });
                let pp = PostParams::default();
                if i % 2 == 0 {
                    let s: Secret =
                        serde_json::from_value(json!({ "metadata": meta, "stringData": { "blob": data } }))?;
                    Api::<Secret>::namespaced(client.clone(), ns)
                        .create(&pp, &s)
                        .await?;
                } else {
                    let c: ConfigMap =
                        serde_json::from_value(json!({ "metadata": meta, "data": { "blob": data } }))?;
                    Api::<ConfigMap>::namespaced(client.clone(), ns)
                        .create(&pp, &c)
                        .await?;
                }
                Ok(())
            }
        })
        .await
}

/// Memory and CPU with `count` unrelated Secrets and ConfigMaps in the watched namespaces, next to
/// `keystones` converged KeystoneAPIs: restarts without them, their creation, restarts with them.
pub async fn unrelated(
    bin_dir: &std::path::Path,
    count: usize,
    keystones: usize,
    max_namespaces: usize,
) -> anyhow::Result<(String, Value)> {
    let mut op = Operator::install("bench-unrelated", false, bin_dir).await?;
    op.start_all().await?;
    let nss = fleet::namespaces(&op.admin, "unrelated", max_namespaces).await?;
    let driver = fleet::drive_pods(&op.admin);
    fleet::converge(
        &op.admin,
        &nss,
        keystones,
        &json!({"replicas": 1}),
        Duration::from_secs(600),
    )
    .await?;
    let without = restart(&mut op).await?;

    let before = usages(&op)?;
    let t = Instant::now();
    unrelated_objects(&op.admin, &nss, count).await?;
    let created = t.elapsed().as_secs_f64();
    let after_create = usages(&op)?;
    tokio::time::sleep(SETTLE).await;
    let settled = usages(&op)?;
    let with = restart(&mut op).await?;
    driver.abort();

    let mut md = format!(
        "## Objects that are not ours\n\n{keystones} converged KeystoneAPIs in {} namespaces; then {count} unrelated \
         objects (half Secrets, half ConfigMaps, 2 KiB data and a 1 KiB annotation each) created in those \
         namespaces in {created:.1} s. Start-up: each controller restarted (graceful stop, fresh process); \
         seconds to /readyz, CPU seconds and peak RSS in its first {} s, RSS then.\n\n\
         | controller | start-up without: ready / CPU / peak / RSS | while {count} are created: CPU / RSS after | start-up with them: ready / CPU / peak / RSS |\n\
         |---|---|---|---|\n",
        nss.len(),
        SETTLE.as_secs()
    );
    let mut js = serde_json::Map::new();
    for (i, r) in op.replicas.iter().enumerate() {
        let (rw, w) = without[i];
        let (rh, h) = with[i];
        let cpu = after_create[i].cpu_seconds - before[i].cpu_seconds;
        md.push_str(&format!(
            "| {} | {rw:.2} s / {:.2} s / {:.1} MiB / {:.1} MiB | {cpu:.2} s / {:.1} MiB | {rh:.2} s / {:.2} s / {:.1} MiB / {:.1} MiB |\n",
            r.controller,
            w.cpu_seconds,
            mib(w.peak_rss_bytes),
            mib(w.rss_bytes),
            mib(settled[i].rss_bytes),
            h.cpu_seconds,
            mib(h.peak_rss_bytes),
            mib(h.rss_bytes),
        ));
        js.insert(
            r.controller.to_owned(),
            json!({
                "startup_without": { "ready_seconds": rw, "usage": w },
                "while_created": { "cpu_seconds": cpu, "rss_bytes_after": settled[i].rss_bytes },
                "startup_with": { "ready_seconds": rh, "usage": h },
            }),
        );
    }
    op.uninstall().await;
    Ok((
        md,
        json!({ "unrelated_objects": count, "keystoneapis": keystones, "created_seconds": created, "controllers": js }),
    ))
}
