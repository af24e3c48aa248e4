//! The stand-in for the default Keystone image (TCIB, CentOS httpd + mod_wsgi), which cannot exist here. For
//! containers whose image matches, the node mounts into the container's mount namespace:
//! - `/usr/local/bin` (a tmpfs) with `httpd`, run in place of the image's `/usr/sbin/httpd`: uWSGI serves
//!   Keystone's WSGI app (Debian has it, not CentOS's httpd layout) with the port, process count and WSGI
//!   script read from the rendered httpd.conf;
//! - `/etc/keystone` (a tmpfs owned by the keystone uid 42425, as the image's is);
//! - `/etc/passwd` and `/etc/group` with the image's `keystone` user and group (42425).
//!
//! Everything else — the command and args, env, volumes, the user, Keystone's code (Debian's) — is the
//! pod's own.

use std::fmt::Write as _;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

/// The image's httpd, as the operator's pods start it.
pub const IMAGE_HTTPD: &str = "/usr/sbin/httpd";
/// What runs in its place.
pub const HTTPD: &str = "/usr/local/bin/httpd";

const HTTPD_SCRIPT: &str = include_str!("../standin/httpd");

/// Whether any container of the pod uses a stand-in image.
pub fn applies(images: &[String], pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .any(|c| {
            let image = c.image.as_deref().unwrap_or_default();
            images.iter().any(|i| image.contains(i.as_str()))
        })
}

/// Writes the stand-in files into `<pod dir>/standin/`.
pub fn write_files(pod_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = pod_dir.join("standin");
    if dir.join("bin/httpd").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("bin"))?;
    let p = dir.join("bin/httpd");
    std::fs::write(&p, HTTPD_SCRIPT)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd.lines().any(|l| l.starts_with("keystone:")) {
        passwd.push_str("keystone:x:42425:42425:keystone:/var/lib/keystone:/usr/sbin/nologin\n");
    }
    let mut group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    if !group.lines().any(|l| l.starts_with("keystone:")) {
        group.push_str("keystone:x:42425:\n");
    }
    std::fs::write(dir.join("passwd"), passwd)?;
    std::fs::write(dir.join("group"), group)?;
    for f in ["passwd", "group"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The mount commands (run as root in the container's mount namespace, before the volumes are mounted).
pub fn mount_script(pod_dir: &Path) -> String {
    let dir = pod_dir.join("standin");
    let d = dir.to_string_lossy();
    let mut s = String::new();
    let _ = writeln!(s, "mount -t tmpfs -o mode=0755 standin-bin /usr/local/bin");
    let _ = writeln!(s, "cp '{d}/bin/httpd' /usr/local/bin/");
    let _ = writeln!(s, "mkdir -p /etc/keystone");
    let _ = writeln!(
        s,
        "mount -t tmpfs -o mode=0755,uid=42425,gid=42425 standin-etc-keystone /etc/keystone"
    );
    let _ = writeln!(s, "mount --bind '{d}/passwd' /etc/passwd");
    let _ = writeln!(s, "mount --bind '{d}/group' /etc/group");
    s
}
