//! `bundlegen RENDERED_CHART OUT_DIR`: writes the OLM bundle (`bundle/…` and `bundle.Dockerfile`) under
//! OUT_DIR from the rendered chart and the repository's sources. Run through `hack/gen-bundle.sh`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use packaging::bundle::{Sources, generate};
use packaging::repo_root;

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The YAML files of a directory, sorted by name: (file name, content).
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, read(&path)?));
        }
    }
    files.sort();
    Ok(files)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rendered, out] = args.as_slice() else {
        bail!("usage: bundlegen RENDERED_CHART OUT_DIR");
    };
    let root = repo_root();
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&read(&root.join("charts/keystone-operator/Chart.yaml"))?)?;
    let field = |k: &str| -> anyhow::Result<String> {
        chart
            .get(k)
            .and_then(serde_yaml::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("Chart.yaml has no {k}"))
    };
    let sources = Sources {
        rendered_chart: read(Path::new(rendered))?,
        csv_base: read(&root.join("hack/olm/clusterserviceversion.base.yaml"))?,
        crds: yaml_files(&root.join("manifests/crds"))?,
        // The basic example first: consoles offer the first alm-example as the default.
        samples: {
            let mut samples = yaml_files(&root.join("manifests/samples"))?;
            samples.sort_by_key(|(name, _)| (name != "keystoneapi.yaml", name.clone()));
            samples.into_iter().map(|(_, content)| content).collect()
        },
        icon_svg: std::fs::read(root.join("hack/olm/icon.svg")).context("cannot read hack/olm/icon.svg")?,
        version: field("appVersion")?,
        kube_version: field("kubeVersion")?,
        default_keystone_image: keystone_types::v1beta1::DEFAULT_CONTAINER_IMAGE.to_owned(),
    };
    let files = generate(&sources)?;
    let out = PathBuf::from(out);
    for (path, content) in files {
        let dest = out.join(&path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&dest, content).with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(())
}
