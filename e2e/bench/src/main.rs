//! `keystone-bench` (run by `make bench`, see BENCHMARKS.md): the three controllers (release builds) on a
//! local control plane with the apiserver's audit log on, each with its own ServiceAccount and the chart's
//! RBAC and leader election, as the chart installs them. It measures
//!
//! 1. convergence: from creating a KeystoneAPI to `Ready=True` (every controller's conditions published),
//!    with Job and Deployment completion played by the pod driver polling every 20 ms, over `--runs`
//!    KeystoneAPIs; and the same objects created by a minimal client (the floor), as a ratio;
//! 2. writes: API writes per controller (audit log, by ServiceAccount) per KeystoneAPI while converging, and
//!    during `--idle` with everything converged (Lease renewals and Events counted apart).
//!
//! It prints a report and writes it to `<out>/report.md` and `<out>/report.json`.

mod audit;
mod floor;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use clap::Parser;
use kube::Api;
use serde_json::json;

use keystone_types::KeystoneAPI;
use keystone_types::conditions;
use test_support::cluster::{named_cluster, repo_root};
use test_support::pods::{Outcome, PodDriver};
use test_support::process::ControllerProcess;
use test_support::{TestNamespace, keystone};

/// The namespace the controllers' ServiceAccounts and Leases live in (the chart's release namespace).
const OPERATOR_NS: &str = "keystone-operator";
const CONTROLLERS: [&str; 3] = ["api", "fernet", "db"];

#[derive(Debug, Parser)]
#[command(
    name = "keystone-bench",
    about = "Benchmarks of the Keystone operator on a local control plane"
)]
struct Args {
    /// KeystoneAPIs converged one after the other (and as many floor runs).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The idle window, with everything converged, in which writes are counted.
    #[arg(long, default_value = "300s", value_parser = operator_common::cli::parse_duration)]
    idle: Duration,
    /// Directory of the controller binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn tool(script: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new(repo_root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {script}"))?;
    anyhow::ensure!(out.status.success(), "{script} failed");
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    ))
}

/// The chart's ServiceAccounts and RBAC (default values), applied with kubectl.
fn install_rbac(kubeconfig: &std::path::Path) -> anyhow::Result<()> {
    let helm = tool("hack/build-helm.sh")?;
    let kubectl = tool("hack/build-control-plane.sh")?.join("kubectl");
    let rendered = Command::new(&helm)
        .args(["template", "keystone-operator"])
        .arg(repo_root().join("charts/keystone-operator"))
        .args(["--namespace", OPERATOR_NS])
        .args([
            "--show-only",
            "templates/serviceaccounts.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ])
        .output()?;
    anyhow::ensure!(
        rendered.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let _ = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["create", "namespace", OPERATOR_NS])
        .output()?;
    let mut apply = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    std::io::Write::write_all(apply.stdin.as_mut().context("stdin")?, &rendered.stdout)?;
    anyhow::ensure!(
        apply.wait()?.success(),
        "kubectl apply of the chart's RBAC failed"
    );
    Ok(())
}

fn user(controller: &str) -> String {
    format!("system:serviceaccount:{OPERATOR_NS}:keystone-operator-{controller}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = if args.bin_dir.is_absolute() {
        args.bin_dir.clone()
    } else {
        repo_root().join(&args.bin_dir)
    };
    for c in CONTROLLERS {
        let b = bin_dir.join(format!("keystone-{c}-controller"));
        if !b.exists() {
            bail!("{} is missing: run `make release` (make bench does)", b.display());
        }
    }
    let cluster = named_cluster("bench", &["--audit"]).await;
    let audit_log = cluster.kubeconfig.with_file_name("logs").join("audit.log");
    anyhow::ensure!(
        audit_log.exists(),
        "{} is missing: the bench cluster must run with --audit",
        audit_log.display()
    );
    let admin = cluster.client().await;
    install_rbac(&cluster.kubeconfig)?;

    // The controllers, as the chart runs them: own ServiceAccount, leader election in the release namespace.
    let mut procs = Vec::new();
    for c in CONTROLLERS {
        let kubeconfig = cluster
            .service_account_kubeconfig(OPERATOR_NS, &format!("keystone-operator-{c}"))
            .await;
        let mut a = vec![
            "--leader-elect",
            "--leader-election-namespace",
            OPERATOR_NS,
            "--log-level",
            "warn",
        ];
        if c == "fernet" {
            a.extend(["--min-rotation-interval", "5m"]);
        }
        let binary = bin_dir.join(format!("keystone-{c}-controller"));
        let mut p = ControllerProcess::start_with_env(
            &binary.to_string_lossy(),
            &kubeconfig,
            None,
            &a,
            &[("POD_NAME".to_owned(), format!("bench-{c}"))],
        );
        p.wait_ready().await;
        procs.push(p);
    }
    eprintln!("bench: controllers up; {} convergence runs", args.runs);

    // 1. Convergence, one KeystoneAPI after the other, each in its own namespace.
    let mut operator_secs = Vec::new();
    let mut namespaces = Vec::new();
    let converge_start = epoch();
    for i in 0..args.runs {
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

    // The floor: the same objects, created by a minimal client.
    let snapshot = floor::Snapshot::take(&admin, &namespaces[0].name, "keystone").await?;
    let mut floor_secs = Vec::new();
    let mut floor_namespaces = Vec::new();
    for i in 0..args.runs {
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
        args.idle,
        namespaces.len()
    );
    tokio::time::sleep(args.idle).await;
    let idle_end = epoch();

    let entries = audit::read(&audit_log);
    let users: Vec<String> = CONTROLLERS.iter().map(|c| user(c)).collect();
    let users_ref: Vec<&str> = users.iter().map(String::as_str).collect();
    let converge = audit::Counts::window(&entries, &users_ref, converge_start, converge_end);
    let idle = audit::Counts::window(&entries, &users_ref, idle_start, idle_end);

    let mut op = operator_secs.clone();
    op.sort_by(f64::total_cmp);
    let mut fl = floor_secs.clone();
    fl.sort_by(f64::total_cmp);
    let n = args.runs as f64;
    let mut md = String::new();
    md.push_str(&format!(
        "## Convergence ({} runs)\n\n| | p50 | p95 | max |\n|---|---|---|---|\n| operator (create → Ready) | {:.3} s | {:.3} s | {:.3} s |\n| floor ({} objects, same order) | {:.3} s | {:.3} s | {:.3} s |\n| ratio | {:.2} | {:.2} | |\n\n",
        args.runs,
        percentile(&op, 50.0),
        percentile(&op, 95.0),
        op.last().copied().unwrap_or(0.0),
        snapshot.len(),
        percentile(&fl, 50.0),
        percentile(&fl, 95.0),
        fl.last().copied().unwrap_or(0.0),
        percentile(&op, 50.0) / percentile(&fl, 50.0).max(1e-9),
        percentile(&op, 95.0) / percentile(&fl, 95.0).max(1e-9),
    ));
    md.push_str(&format!(
        "## API requests per controller\n\n| controller | writes per KeystoneAPI converging | Events per KeystoneAPI | reads per KeystoneAPI | writes in {} s idle ({} KeystoneAPIs) | Lease writes idle | Events idle |\n|---|---|---|---|---|---|---|\n",
        args.idle.as_secs(),
        namespaces.len()
    ));
    let mut json_controllers = serde_json::Map::new();
    for (c, u) in CONTROLLERS.iter().zip(&users) {
        let (w, _l, e) = converge.writes(u);
        let (iw, il, ie) = idle.writes(u);
        md.push_str(&format!(
            "| {c} | {:.1} | {:.1} | {:.1} | {iw} | {il} | {ie} |\n",
            w as f64 / n,
            e as f64 / n,
            converge.reads(u) as f64 / n
        ));
        json_controllers.insert(
            (*c).to_owned(),
            json!({
                "converge_writes_per_keystone": w as f64 / n,
                "converge_events_per_keystone": e as f64 / n,
                "converge_reads_per_keystone": converge.reads(u) as f64 / n,
                "converge_write_classes": converge.write_classes(u),
                "idle_writes": iw, "idle_lease_writes": il, "idle_events": ie,
                "idle_write_classes": idle.write_classes(u),
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
            idle.write_classes(u)
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
    println!("{md}");
    std::fs::create_dir_all(repo_root().join(&args.out))?;
    std::fs::write(repo_root().join(&args.out).join("report.md"), &md)?;
    let report = json!({
        "runs": args.runs,
        "operator_seconds": operator_secs,
        "floor_seconds": floor_secs,
        "floor_objects": snapshot.len(),
        "idle_seconds": args.idle.as_secs(),
        "controllers": json_controllers,
    });
    std::fs::write(
        repo_root().join(&args.out).join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    drop(procs);
    for ns in namespaces {
        ns.delete().await;
    }
    Ok(())
}
