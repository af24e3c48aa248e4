//! Convergence and writes: KeystoneAPIs converged one after the other, each timed from its create call to
//! `Ready=True` (every controller's conditions published), with Job and Deployment completion played by the pod
//! driver polling every 20 ms; the same objects created by a minimal client (the floor), as a ratio; and API
//! writes per controller (audit log, by ServiceAccount) per KeystoneAPI while converging and during an idle
//! window with everything converged (Lease renewals and Events counted apart).

use std::path::Path;
use std::time::{Duration, Instant};

use kube::Api;
use serde_json::{Value, json};

use keystone_types::KeystoneAPI;
use keystone_types::conditions;
use test_support::pods::{Outcome, PodDriver};
use test_support::{TestNamespace, keystone};

use crate::fleet::percentile;
use crate::operator::{CONTROLLERS, Operator, user};
use crate::{audit, epoch, floor};

/// `runs` KeystoneAPIs and as many floor runs, then `idle` with everything converged.
pub async fn run(bin_dir: &Path, runs: usize, idle: Duration) -> anyhow::Result<(String, Value)> {
    let mut op = Operator::install("bench", true, bin_dir).await?;
    let audit_log = op.cluster.kubeconfig.with_file_name("logs").join("audit.log");
    anyhow::ensure!(
        audit_log.exists(),
        "{} is missing: the bench cluster must run with --audit",
        audit_log.display()
    );
    let admin = op.admin.clone();
    op.start_all().await?;
    eprintln!("bench: controllers up; {runs} convergence runs");

    // 1. Convergence, one KeystoneAPI after the other, each in its own namespace.
    let mut operator_secs = Vec::new();
    let mut namespaces = Vec::new();
    let converge_start = epoch();
    let mut runs_before = Vec::new();
    for r in &op.replicas {
        runs_before.push(r.metric("reconcile_runs_total").await.unwrap_or(0.0));
    }
    for i in 0..runs {
        let ns = TestNamespace::new(&admin, "bench-op").await;
        keystone::create_osp_secret(&admin, &ns.name, "admin-pw", "db-pw", "root-pw").await;
        let keystones: Api<KeystoneAPI> = Api::namespaced(admin.clone(), &ns.name);
        let driver = PodDriver::new(&admin, &ns.name);
        let t0 = Instant::now();
        keystone::create(&admin, &ns.name, "keystone", json!({"replicas": 1})).await;
        loop {
            driver.drive_keystone(Outcome::Succeeded).await?;
            let ks = keystones.get("keystone").await?;
            if keystone::condition_is(&ks, conditions::READY, "True").is_ok() {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "run {i}: not Ready after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!("bench: operator run {i}: Ready in {secs:.3} s");
        operator_secs.push(secs);
        namespaces.push(ns);
    }
    // Trailing writes (status after Ready, Events) belong to convergence too.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let converge_end = epoch();
    let mut reconciles = Vec::new();
    for (r, before) in op.replicas.iter().zip(&runs_before) {
        reconciles.push(r.metric("reconcile_runs_total").await.unwrap_or(0.0) - before);
    }

    // The floor: the same objects, created by a minimal client.
    let snapshot = floor::Snapshot::take(&admin, &namespaces[0].name, "keystone").await?;
    let mut floor_secs = Vec::new();
    let mut floor_namespaces = Vec::new();
    for i in 0..runs {
        let ns = TestNamespace::new(&admin, "bench-floor").await;
        keystone::create_osp_secret(&admin, &ns.name, "admin-pw", "db-pw", "root-pw").await;
        let d = floor::converge(&admin, &ns.name, &snapshot).await?;
        eprintln!(
            "bench: floor run {i}: {} objects in {:.3} s",
            snapshot.len(),
            d.as_secs_f64()
        );
        floor_secs.push(d.as_secs_f64());
        floor_namespaces.push(ns);
    }
    for ns in floor_namespaces {
        ns.delete().await;
    }

    // 2. Idle: everything converged, nothing changes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_start = epoch();
    eprintln!(
        "bench: idle for {:?} with {} KeystoneAPIs",
        idle,
        namespaces.len()
    );
    tokio::time::sleep(idle).await;
    let idle_end = epoch();

    let entries = audit::read(&audit_log);
    let users: Vec<String> = CONTROLLERS.iter().map(|c| user(c)).collect();
    let users_ref: Vec<&str> = users.iter().map(String::as_str).collect();
    let converge = audit::Counts::window(&entries, &users_ref, converge_start, converge_end);
    let quiet = audit::Counts::window(&entries, &users_ref, idle_start, idle_end);

    let mut sorted = operator_secs.clone();
    sorted.sort_by(f64::total_cmp);
    let mut fl = floor_secs.clone();
    fl.sort_by(f64::total_cmp);
    let n = runs as f64;
    let mut md = String::new();
    md.push_str(&format!(
        "## Convergence ({} runs)\n\n| | p50 | p95 | max |\n|---|---|---|---|\n| operator (create → Ready) | {:.3} s | {:.3} s | {:.3} s |\n| floor ({} objects, same order) | {:.3} s | {:.3} s | {:.3} s |\n| ratio | {:.2} | {:.2} | |\n\n",
        runs,
        percentile(&sorted, 50.0),
        percentile(&sorted, 95.0),
        sorted.last().copied().unwrap_or(0.0),
        snapshot.len(),
        percentile(&fl, 50.0),
        percentile(&fl, 95.0),
        fl.last().copied().unwrap_or(0.0),
        percentile(&sorted, 50.0) / percentile(&fl, 50.0).max(1e-9),
        percentile(&sorted, 95.0) / percentile(&fl, 95.0).max(1e-9),
    ));
    md.push_str(&format!(
        "## API requests per controller\n\n| controller | reconciles per KeystoneAPI converging | writes per KeystoneAPI converging | Events per KeystoneAPI | reads per KeystoneAPI | writes in {} s idle ({} KeystoneAPIs) | Lease writes idle | Events idle |\n|---|---|---|---|---|---|---|---|\n",
        idle.as_secs(),
        namespaces.len()
    ));
    let mut json_controllers = serde_json::Map::new();
    for ((c, u), runs) in CONTROLLERS.iter().zip(&users).zip(&reconciles) {
        let (w, _l, e) = converge.writes(u);
        let (iw, il, ie) = quiet.writes(u);
        md.push_str(&format!(
            "| {c} | {:.1} | {:.1} | {:.1} | {:.1} | {iw} | {il} | {ie} |\n",
            runs / n,
            w as f64 / n,
            e as f64 / n,
            converge.reads(u) as f64 / n
        ));
        json_controllers.insert(
            (*c).to_owned(),
            json!({
                "converge_reconciles_per_keystone": runs / n,
                "converge_writes_per_keystone": w as f64 / n,
                "converge_events_per_keystone": e as f64 / n,
                "converge_reads_per_keystone": converge.reads(u) as f64 / n,
                "converge_write_classes": converge.write_classes(u),
                "idle_writes": iw, "idle_lease_writes": il, "idle_events": ie,
                "idle_write_classes": quiet.write_classes(u),
            }),
        );
    }
    md.push_str("\nWrites while converging, by verb and resource (all runs):\n\n");
    for (c, u) in CONTROLLERS.iter().zip(&users) {
        let classes = converge.write_classes(u);
        md.push_str(&format!(
            "- {c}: {}\n",
            classes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let idle_classes: Vec<String> = CONTROLLERS
        .iter()
        .zip(&users)
        .flat_map(|(c, u)| {
            quiet
                .write_classes(u)
                .into_iter()
                .map(move |(k, v)| format!("{c}: {k} {v}"))
        })
        .collect();
    md.push_str(&format!(
        "\nIdle writes other than Leases and Events: {}\n",
        if idle_classes.is_empty() {
            "none".to_owned()
        } else {
            idle_classes.join(", ")
        }
    ));
    let report = json!({
        "runs": runs,
        "operator_seconds": operator_secs,
        "floor_seconds": floor_secs,
        "floor_objects": snapshot.len(),
        "idle_seconds": idle.as_secs(),
        "controllers": json_controllers,
    });
    drop(admin);
    op.uninstall().await;
    drop(namespaces);
    Ok((md, report))
}
