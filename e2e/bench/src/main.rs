//! `keystone-bench` (run by `make bench`, see BENCHMARKS.md): the three controllers (release builds) as the
//! chart installs them — each its own process with its own ServiceAccount, the chart's RBAC and leader
//! election — on fresh local control planes, with the pod driver playing the kubelet. Phases:
//!
//! - `converge`: convergence time against a floor client, and API writes per controller while converging and
//!   idle (audit log);
//! - `scale`: N KeystoneAPIs at once across up to 50 namespaces: time, CPU seconds and peak RSS per controller;
//! - `unrelated`: CPU and memory with 10,000 Secrets and ConfigMaps that are not ours, running and at start-up;
//! - `rotation`: scheduled against actual fernet rotation times over many instances;
//! - `failover`: from stopping or killing the leader to the standby's lease and first reconcile.
//!
//! It prints a report and writes it to `<out>/report.md` and `<out>/report.json`.

mod audit;
mod converge;
mod failover;
mod fleet;
mod floor;
mod operator;
mod procstat;
mod rotation;
mod scale;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use clap::{Parser, ValueEnum};
use serde_json::json;

use test_support::cluster::repo_root;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Converge,
    Scale,
    Unrelated,
    Rotation,
    Failover,
}

#[derive(Debug, Parser)]
#[command(
    name = "keystone-bench",
    about = "Benchmarks of the Keystone operator on a local control plane"
)]
struct Args {
    /// Phases to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "converge,scale,unrelated,rotation,failover"
    )]
    phases: Vec<Phase>,
    /// converge: KeystoneAPIs converged one after the other (and as many floor runs).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// converge: the idle window, with everything converged, in which writes are counted.
    #[arg(long, default_value = "300s", value_parser = operator_common::cli::parse_duration)]
    idle: Duration,
    /// scale: numbers of KeystoneAPIs, each on a fresh control plane.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,500")]
    scale: Vec<usize>,
    /// scale, unrelated, rotation: at most this many namespaces, KeystoneAPIs spread round-robin.
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    /// unrelated: Secrets and ConfigMaps that are not ours (half each).
    #[arg(long, default_value_t = 10_000)]
    unrelated: usize,
    /// rotation: KeystoneAPIs rotating every 30 s.
    #[arg(long, default_value_t = 50)]
    rotation_instances: usize,
    /// rotation: how long rotations are watched.
    #[arg(long, default_value = "240s", value_parser = operator_common::cli::parse_duration)]
    rotation_window: Duration,
    /// failover: rounds per controller and signal.
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// failover: converged KeystoneAPIs the standby must reconcile.
    #[arg(long, default_value_t = 20)]
    failover_instances: usize,
    /// Directory of the controller binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// Unix time in seconds.
pub fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = if args.bin_dir.is_absolute() {
        args.bin_dir.clone()
    } else {
        repo_root().join(&args.bin_dir)
    };
    for c in operator::CONTROLLERS {
        let b = bin_dir.join(format!("keystone-{c}-controller"));
        if !b.exists() {
            bail!("{} is missing: run `make release` (make bench does)", b.display());
        }
    }
    let out = repo_root().join(&args.out);
    std::fs::create_dir_all(&out)?;
    let mut md = String::from("# keystone-bench report\n\n");
    let mut report = serde_json::Map::new();
    for phase in &args.phases {
        eprintln!("bench: phase {phase:?}");
        let (section, value) = match phase {
            Phase::Converge => converge::run(&bin_dir, args.runs, args.idle).await?,
            Phase::Scale => scale::run(&bin_dir, &args.scale, args.namespaces).await?,
            Phase::Unrelated => scale::unrelated(&bin_dir, args.unrelated, 10, args.namespaces).await?,
            Phase::Rotation => {
                rotation::run(
                    &bin_dir,
                    args.rotation_instances,
                    args.namespaces,
                    args.rotation_window,
                )
                .await?
            }
            Phase::Failover => failover::run(&bin_dir, args.failovers, args.failover_instances).await?,
        };
        println!("{section}");
        md.push_str(&section);
        md.push('\n');
        report.insert(format!("{phase:?}").to_lowercase(), value);
        // Written after every phase, so that a long run that fails late keeps what it measured.
        std::fs::write(out.join("report.md"), &md)?;
        std::fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&json!(report))?,
        )?;
    }
    Ok(())
}
