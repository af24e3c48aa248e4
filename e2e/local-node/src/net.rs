//! Pod networking: one Linux bridge for the node (its address is the node's host address, where MariaDB and
//! memcached listen), and per pod a network namespace with a veth pair into the bridge, its own address and a
//! default route via the bridge. Traffic stays between these test hosts and the node.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context as _, bail};

/// The node's bridge and subnet (/24).
#[derive(Clone, Debug)]
pub struct Bridge {
    /// Interface name.
    pub name: String,
    /// The bridge's (host) address; pods get `.10` to `.250` of the same /24.
    pub host: Ipv4Addr,
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Bridge {
    /// Creates the bridge (or reuses it) with the host address.
    pub fn ensure(&self) -> anyhow::Result<()> {
        if ip(&["link", "show", &self.name]).is_err() {
            ip(&["link", "add", &self.name, "type", "bridge"])?;
        }
        let addr = format!("{}/24", self.host);
        if !ip(&["-4", "addr", "show", "dev", &self.name])?.contains(&addr) {
            ip(&["addr", "add", &addr, "dev", &self.name])?;
        }
        ip(&["link", "set", &self.name, "up"])?;
        Ok(())
    }

    /// Removes the bridge.
    pub fn remove(&self) {
        let _ = ip(&["link", "del", &self.name]);
    }

    /// The address of pod slot `n` (10..=250).
    pub fn pod_address(&self, n: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.host.octets();
        Ipv4Addr::new(a, b, c, n)
    }
}

/// A pod's network namespace.
#[derive(Clone, Debug)]
pub struct PodNet {
    /// `ip netns` name.
    pub netns: String,
    /// Host side of the veth pair.
    pub host_if: String,
    /// The pod's address.
    pub address: Ipv4Addr,
}

impl PodNet {
    /// Creates the namespace `<bridge>-<id>`, the veth pair, the address and the default route.
    pub fn create(bridge: &Bridge, id: &str, address: Ipv4Addr) -> anyhow::Result<Self> {
        let net = Self {
            netns: format!("{}-{id}", bridge.name),
            host_if: format!("kv{id}"),
            address,
        };
        net.remove();
        let tmp = format!("kp{id}");
        ip(&["netns", "add", &net.netns])?;
        ip(&["link", "add", &net.host_if, "type", "veth", "peer", "name", &tmp])?;
        ip(&["link", "set", &tmp, "netns", &net.netns])?;
        ip(&["link", "set", &net.host_if, "master", &bridge.name, "up"])?;
        let ns = |args: &[&str]| {
            let mut full = vec!["-n", net.netns.as_str()];
            full.extend_from_slice(args);
            ip(&full)
        };
        ns(&["link", "set", &tmp, "name", "eth0"])?;
        ns(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ns(&["link", "set", "eth0", "up"])?;
        ns(&["link", "set", "lo", "up"])?;
        ns(&["route", "add", "default", "via", &bridge.host.to_string()])?;
        Ok(net)
    }

    /// Deletes the namespace and the veth pair (idempotent).
    pub fn remove(&self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

/// Removes the pod namespaces an earlier run of this node (same bridge) left behind; other nodes' stay.
pub fn remove_stale(bridge: &Bridge) {
    let prefix = format!("{}-", bridge.name);
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if let Some(id) = name.strip_prefix(&prefix) {
                let _ = ip(&["link", "del", &format!("kv{id}")]);
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}
