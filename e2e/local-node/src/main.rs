//! `keystone-local-node`: a node for the embedded control plane. Needs root (network and mount namespaces).
//! Wiring only; see the library's modules.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser;

use keystone_local_node::net::{self, Bridge};
use keystone_local_node::node;
use keystone_local_node::pod::NodeConfig;

#[derive(Debug, Parser)]
#[command(
    name = "keystone-local-node",
    version,
    about = "Runs the pods bound to a local node as real processes"
)]
struct Args {
    /// The Node object's name.
    #[arg(long, default_value = "local-node")]
    node_name: String,
    /// Bind (schedule) unscheduled pods of this namespace to the node; repeat for several.
    #[arg(long = "schedule-namespace")]
    schedule_namespaces: Vec<String>,
    /// Pod state: volumes, hosts files, setup scripts.
    #[arg(long, default_value = "/var/lib/keystone-local-node")]
    state_dir: PathBuf,
    /// Container logs: <log-dir>/<namespace>_<pod>_<uid>/<container>.log
    #[arg(long, default_value = "/var/log/keystone-local-node")]
    log_dir: PathBuf,
    /// The node's bridge.
    #[arg(long, default_value = "kln0")]
    bridge: String,
    /// The bridge's address (the node's host address; pods get .10-.250 of its /24).
    #[arg(long, default_value = "10.251.0.1")]
    host_address: std::net::Ipv4Addr,
    /// Images containing this string run with the Keystone image stand-in; repeat for several.
    #[arg(long = "standin-image", default_values_t = ["openstack-keystone".to_string()])]
    standin_images: Vec<String>,
    /// Remove the bridge on exit.
    #[arg(long)]
    remove_bridge: bool,
    /// Stop when this process exits (for test harnesses).
    #[arg(long)]
    parent_pid: Option<u32>,
}

fn euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .compact()
        .init();
    if euid() != 0 {
        bail!(
            "keystone-local-node must run as root: it creates network namespaces, veth pairs and mount namespaces"
        );
    }
    let bridge = Bridge {
        name: args.bridge.clone(),
        host: args.host_address,
    };
    bridge.ensure().context("cannot set up the node bridge")?;
    net::remove_stale(&bridge);
    let _ = std::fs::remove_dir_all(args.state_dir.join("pods"));
    std::fs::create_dir_all(args.state_dir.join("pods"))?;
    std::fs::create_dir_all(&args.log_dir)?;
    use std::os::unix::fs::PermissionsExt;
    for d in [&args.state_dir, &args.state_dir.join("pods")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    let cfg = Arc::new(NodeConfig {
        name: args.node_name.clone(),
        state_dir: args.state_dir.clone(),
        log_dir: args.log_dir.clone(),
        bridge: bridge.clone(),
        standin_images: args.standin_images.clone(),
    });
    let client = kube::Client::try_default()
        .await
        .context("no usable kubeconfig")?;
    node::register(&client, &cfg)
        .await
        .context("cannot register the Node")?;
    tracing::info!(node = %cfg.name, bridge = %bridge.name, host = %bridge.host, logs = %args.log_dir.display(), "node ready");
    let schedule: BTreeSet<String> = args.schedule_namespaces.into_iter().collect();
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let parent = args.parent_pid;
        let orphaned = async move {
            match parent {
                Some(pid) => loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                        return;
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = orphaned => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("stopping: pods' processes end, pod objects stay");
    };
    node::run(client, cfg, schedule, stop).await?;
    if args.remove_bridge {
        bridge.remove();
    }
    Ok(())
}
