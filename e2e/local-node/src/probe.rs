//! Container probes, run by the node against the pod's address: httpGet (2xx/3xx is success), tcpSocket,
//! and exec (inside the container's namespaces via nsenter).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs one probe; `Err` says why it failed. `pid` is the container's main process (for exec probes).
pub async fn run(probe: &Probe, container: &Container, ip: IpAddr, pid: Option<u32>) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        if let Some(h) = &probe.http_get {
            let port = port(container, &h.port).ok_or("unknown probe port")?;
            let mut stream = TcpStream::connect(SocketAddr::new(ip, port))
                .await
                .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
            let path = h.path.as_deref().unwrap_or("/");
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/local-node\r\nAccept: */*\r\n\r\n"
            );
            stream
                .write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 64];
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            let head = String::from_utf8_lossy(&buf[..n]);
            let code: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("not an HTTP reply: {head:?}"))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        } else if let Some(t) = &probe.tcp_socket {
            let port = port(container, &t.port).ok_or("unknown probe port")?;
            TcpStream::connect(SocketAddr::new(ip, port))
                .await
                .map(|_| ())
                .map_err(|e| format!("connect {ip}:{port}: {e}"))
        } else if let Some(e) = &probe.exec {
            let pid = pid.ok_or("container not running")?;
            let status = tokio::process::Command::new("nsenter")
                .args(["--target", &pid.to_string(), "--mount", "--net", "--"])
                .args(e.command.iter().flatten())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("exec probe exited with {status}"))
            }
        } else {
            Err("probe has no handler".into())
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("probe timed out after {timeout:?}")))
}
