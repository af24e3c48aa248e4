//! The OLM bundle, generated from the same sources as the chart: the chart rendered with default values (the
//! three Deployments, their RBAC and metrics Services), the CRDs and samples in `manifests/`, and the
//! hand-written part of the ClusterServiceVersion in `hack/olm/`. `hack/gen-bundle.sh` runs the `bundlegen`
//! binary, which calls [`generate`]; the tests check `bundle/` for drift and run OLM's validators on it.
//!
//! What changes on the way from the chart to the CSV:
//! - Helm's own labels (`helm.sh/chart`, `app.kubernetes.io/managed-by: Helm`) are dropped.
//! - Each controller reads the namespace to watch from OLM's `olm.targetNamespaces` pod annotation (empty in
//!   AllNamespaces mode, which the controllers read as "all namespaces").
//! - Rules on cluster-scoped resources (the CRD lookup) become `clusterPermissions`; every other rule becomes
//!   `permissions`, which OLM grants in the operator's namespace and in each target namespace (or cluster-wide
//!   in AllNamespaces mode).
//! - The lease rules lose their `resourceNames`: the chart knows the lease names because it knows the watched
//!   namespace; a bundle does not (the name is `keystone-<controller>[-<watched namespace>]`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize as _;
use serde_yaml::{Mapping, Value};

/// Package and channel of the bundle.
pub const PACKAGE: &str = "keystone-operator";
/// The one channel so far: `candidate` (OLM's naming convention) while the API is v1beta1.
pub const CHANNEL: &str = "candidate";
/// The env var the controllers read the watched namespace from (`--namespace`).
pub const WATCH_NAMESPACE_ENV: &str = "KEYSTONE_OPERATOR_WATCH_NAMESPACE";
/// Where OLM publishes the target namespaces on the operator's pods.
pub const TARGET_NAMESPACES_FIELD: &str = "metadata.annotations['olm.targetNamespaces']";

/// Resources the controllers touch that are cluster-scoped (rules on them go to `clusterPermissions`).
const CLUSTER_SCOPED: &[&str] = &["customresourcedefinitions", "namespaces", "nodes"];
/// Labels Helm adds that mean nothing under OLM.
const HELM_LABELS: &[&str] = &["helm.sh/chart", "app.kubernetes.io/managed-by"];

/// What the bundle is made from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `helm template` of the chart with default values (without `--include-crds`).
    pub rendered_chart: String,
    /// `hack/olm/clusterserviceversion.base.yaml`.
    pub csv_base: String,
    /// The CRD files of `manifests/crds/`: (file name, content).
    pub crds: Vec<(String, String)>,
    /// The sample files of `manifests/samples/` (only their documents of our kinds are used).
    pub samples: Vec<String>,
    /// `hack/olm/icon.svg`.
    pub icon_svg: Vec<u8>,
    /// The chart's `appVersion` (the CSV's version).
    pub version: String,
    /// The chart's `kubeVersion` constraint, e.g. `>=1.31.0-0`.
    pub kube_version: String,
    /// The Keystone image a KeystoneAPI runs when `containerImage` is not set.
    pub default_keystone_image: String,
}

/// A bundle generation failure: which input is wrong and how.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An input is not the YAML expected.
    #[error("{what}: {message}")]
    Input { what: String, message: String },
    /// Serialising an output failed.
    #[error("cannot serialise {what}: {source}")]
    Serialise { what: String, source: serde_yaml::Error },
}

fn input(what: impl Into<String>, message: impl Into<String>) -> BundleError {
    BundleError::Input {
        what: what.into(),
        message: message.into(),
    }
}

/// The documents of a multi-document YAML stream (empty ones dropped).
fn documents(yaml: &str, what: &str) -> Result<Vec<Value>, BundleError> {
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(yaml) {
        let v = Value::deserialize(d).map_err(|e| input(what, e.to_string()))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn kind(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// The labels without Helm's.
fn olm_labels(labels: Option<&Value>) -> Mapping {
    let mut out = Mapping::new();
    if let Some(Value::Mapping(m)) = labels {
        for (k, v) in m {
            if !k.as_str().is_some_and(|k| HELM_LABELS.contains(&k)) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// One entry of the CSV's `install.spec.deployments`, and its container image.
fn csv_deployment(d: &Value) -> Result<(Value, String), BundleError> {
    let dname = name(d).to_owned();
    let what = format!("Deployment {dname}");
    let mut spec = d
        .get("spec")
        .cloned()
        .ok_or_else(|| input(&what, "has no spec"))?;
    let containers = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(|s| s.get_mut("containers"))
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| input(&what, "has no containers"))?;
    let mut image = String::new();
    for c in containers.iter_mut() {
        if let Some(i) = c.get("image").and_then(Value::as_str) {
            image = i.to_owned();
        }
        let Value::Mapping(c) = c else {
            return Err(input(&what, "a container is not a mapping"));
        };
        let env = c.entry(s("env")).or_insert_with(|| Value::Sequence(Vec::new()));
        let Value::Sequence(env) = env else {
            return Err(input(&what, "env is not a list"));
        };
        if env
            .iter()
            .any(|e| e.get("name").and_then(Value::as_str) == Some(WATCH_NAMESPACE_ENV))
        {
            return Err(input(&what, format!("already sets {WATCH_NAMESPACE_ENV}")));
        }
        env.push(map([
            ("name", s(WATCH_NAMESPACE_ENV)),
            (
                "valueFrom",
                map([("fieldRef", map([("fieldPath", s(TARGET_NAMESPACES_FIELD))]))]),
            ),
        ]));
    }
    if image.is_empty() {
        return Err(input(&what, "has no container image"));
    }
    let labels = olm_labels(d.get("metadata").and_then(|m| m.get("labels")));
    Ok((
        map([
            ("name", s(&dname)),
            ("label", Value::Mapping(labels)),
            ("spec", spec),
        ]),
        image,
    ))
}

/// Rules per ServiceAccount, split into namespaced and cluster-scoped, in the order the chart binds them.
#[derive(Debug, Default)]
struct Grants {
    namespaced: Vec<(String, Vec<Value>)>,
    cluster: Vec<(String, Vec<Value>)>,
}

fn push_rule(list: &mut Vec<(String, Vec<Value>)>, sa: &str, rule: Value) {
    let pos = match list.iter().position(|(n, _)| n == sa) {
        Some(p) => p,
        None => {
            list.push((sa.to_owned(), Vec::new()));
            list.len() - 1
        }
    };
    if !list[pos].1.contains(&rule) {
        list[pos].1.push(rule);
    }
}

fn is_cluster_scoped(rule: &Value) -> bool {
    rule.get("resources")
        .and_then(Value::as_sequence)
        .is_some_and(|r| {
            !r.is_empty()
                && r.iter()
                    .all(|r| r.as_str().is_some_and(|r| CLUSTER_SCOPED.contains(&r)))
        })
}

fn is_lease_rule(rule: &Value) -> bool {
    rule.get("resources")
        .and_then(Value::as_sequence)
        .is_some_and(|r| r.iter().any(|r| r.as_str() == Some("leases")))
}

fn grants(docs: &[Value]) -> Result<Grants, BundleError> {
    let mut out = Grants::default();
    for binding in docs
        .iter()
        .filter(|d| matches!(kind(d), "RoleBinding" | "ClusterRoleBinding"))
    {
        let what = format!("{} {}", kind(binding), name(binding));
        let role_ref = binding
            .get("roleRef")
            .ok_or_else(|| input(&what, "has no roleRef"))?;
        let role_kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or_default();
        let role_name = role_ref.get("name").and_then(Value::as_str).unwrap_or_default();
        let role = docs
            .iter()
            .find(|d| kind(d) == role_kind && name(d) == role_name)
            .ok_or_else(|| {
                input(
                    &what,
                    format!("binds {role_kind} {role_name}, which the chart does not render"),
                )
            })?;
        let subjects = binding
            .get("subjects")
            .and_then(Value::as_sequence)
            .ok_or_else(|| input(&what, "has no subjects"))?;
        for subject in subjects {
            if subject.get("kind").and_then(Value::as_str) != Some("ServiceAccount") {
                return Err(input(&what, "binds something other than a ServiceAccount"));
            }
            let sa = subject.get("name").and_then(Value::as_str).unwrap_or_default();
            for rule in role
                .get("rules")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let mut rule = rule.clone();
                if is_cluster_scoped(&rule) {
                    push_rule(&mut out.cluster, sa, rule);
                } else {
                    if is_lease_rule(&rule)
                        && let Value::Mapping(m) = &mut rule
                    {
                        m.remove("resourceNames");
                    }
                    push_rule(&mut out.namespaced, sa, rule);
                }
            }
        }
    }
    // Merge the lease rules that differ only by the names just dropped.
    for (_, rules) in &mut out.namespaced {
        let mut seen: Vec<Value> = Vec::new();
        rules.retain(|r| {
            if seen.contains(r) {
                false
            } else {
                seen.push(r.clone());
                true
            }
        });
    }
    Ok(out)
}

fn permissions(list: Vec<(String, Vec<Value>)>) -> Value {
    Value::Sequence(
        list.into_iter()
            .map(|(sa, rules)| map([("serviceAccountName", s(&sa)), ("rules", Value::Sequence(rules))]))
            .collect(),
    )
}

/// A metrics Service of the chart, as a bundle manifest (OLM creates it in the operator's namespace).
fn bundle_service(svc: &Value) -> Value {
    let mut svc = svc.clone();
    if let Some(Value::Mapping(meta)) = svc.get_mut("metadata") {
        meta.remove("namespace");
        let labels = olm_labels(meta.get("labels"));
        meta.insert(s("labels"), Value::Mapping(labels));
    }
    svc
}

/// `>=1.31.0-0` → `1.31.0`.
fn min_kube_version(constraint: &str) -> Result<String, BundleError> {
    let v = constraint.trim().strip_prefix(">=").ok_or_else(|| {
        input(
            "Chart.yaml kubeVersion",
            format!("{constraint:?} is not a >= constraint"),
        )
    })?;
    let v = v.trim().split('-').next().unwrap_or_default();
    if v.split('.').count() != 3 || !v.split('.').all(|p| p.parse::<u32>().is_ok()) {
        return Err(input(
            "Chart.yaml kubeVersion",
            format!("{constraint:?} is not >=X.Y.Z"),
        ));
    }
    Ok(v.to_owned())
}

/// The examples of our kinds for `alm-examples`, as JSON (the samples' comments dropped).
fn alm_examples(samples: &[String]) -> Result<String, BundleError> {
    let mut examples = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        for doc in documents(sample, &format!("sample {i}"))? {
            if matches!(kind(&doc), "KeystoneAPI" | "KeystoneService" | "KeystoneEndpoint") {
                examples.push(
                    serde_json::to_value(&doc).map_err(|e| input(format!("sample {i}"), e.to_string()))?,
                );
            }
        }
    }
    if examples.is_empty() {
        return Err(input(
            "manifests/samples",
            "holds no KeystoneAPI, KeystoneService or KeystoneEndpoint",
        ));
    }
    serde_json::to_string_pretty(&examples).map_err(|e| input("alm-examples", e.to_string()))
}

fn to_yaml(what: &str, v: &Value) -> Result<String, BundleError> {
    serde_yaml::to_string(v).map_err(|source| BundleError::Serialise {
        what: what.to_owned(),
        source,
    })
}

/// The bundle's media-type, package and channel annotations (also the bundle image's labels).
pub fn bundle_annotations() -> Vec<(&'static str, String)> {
    vec![
        (
            "operators.operatorframework.io.bundle.mediatype.v1",
            "registry+v1".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.manifests.v1",
            "manifests/".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.metadata.v1",
            "metadata/".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.package.v1",
            PACKAGE.to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.channels.v1",
            CHANNEL.to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.channel.default.v1",
            CHANNEL.to_owned(),
        ),
    ]
}

/// The file name of the CSV inside `bundle/manifests/`.
pub fn csv_file() -> String {
    format!("{PACKAGE}.clusterserviceversion.yaml")
}

/// Every generated file, by path relative to the repository root: `bundle/manifests/*`,
/// `bundle/metadata/annotations.yaml` and `bundle.Dockerfile`.
pub fn generate(src: &Sources) -> Result<BTreeMap<String, String>, BundleError> {
    const HEADER: &str = "# Generated by hack/gen-bundle.sh from charts/keystone-operator, manifests/ and hack/olm/. Do not edit.\n";
    let docs = documents(&src.rendered_chart, "the rendered chart")?;
    let mut files = BTreeMap::new();

    let mut deployments = Vec::new();
    let mut images = Vec::new();
    for d in docs.iter().filter(|d| kind(d) == "Deployment") {
        let (dep, image) = csv_deployment(d)?;
        let component = d
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get("app.kubernetes.io/component"))
            .and_then(Value::as_str)
            .unwrap_or(name(d))
            .to_owned();
        deployments.push(dep);
        images.push((component, image));
    }
    if deployments.len() != 3 {
        return Err(input(
            "the rendered chart",
            format!(
                "has {} Deployments, expected the three controllers",
                deployments.len()
            ),
        ));
    }
    let grants = grants(&docs)?;

    for svc in docs.iter().filter(|d| kind(d) == "Service") {
        files.insert(
            format!("bundle/manifests/{}_v1_service.yaml", name(svc)),
            to_yaml("a metrics Service", &bundle_service(svc))?,
        );
    }
    for (file, crd) in &src.crds {
        // One document per file, without the `---` that starts the generated CRD: OLM's bundle loader reads
        // only the first document of a manifest.
        let docs = documents(crd, file)?;
        let [doc] = docs.as_slice() else {
            return Err(input(
                file,
                format!("holds {} documents, expected one CRD", docs.len()),
            ));
        };
        files.insert(
            format!("bundle/manifests/{file}"),
            format!("{HEADER}{}", to_yaml(file, doc)?),
        );
    }

    let base = documents(&src.csv_base, "the CSV base")?
        .into_iter()
        .next()
        .ok_or_else(|| input("the CSV base", "is empty"))?;
    let base_meta = base
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Mapping(Mapping::new()));
    let base_spec = base
        .get("spec")
        .and_then(Value::as_mapping)
        .cloned()
        .ok_or_else(|| input("the CSV base", "has no spec"))?;

    let mut annotations = base_meta
        .get("annotations")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    annotations.insert(s("alm-examples"), s(&alm_examples(&src.samples)?));
    let api_image = images
        .iter()
        .find(|(c, _)| c == "api-controller")
        .map(|(_, i)| i.clone())
        .ok_or_else(|| input("the rendered chart", "has no api-controller Deployment"))?;
    annotations.insert(s("containerImage"), s(&api_image));
    annotations.insert(
        s("operatorframework.io/suggested-namespace"),
        s("keystone-operator"),
    );

    let mut spec = Mapping::new();
    for key in [
        "displayName",
        "description",
        "version",
        "minKubeVersion",
        "maturity",
    ] {
        match key {
            "version" => {
                spec.insert(s(key), s(&src.version));
            }
            "minKubeVersion" => {
                spec.insert(s(key), s(&min_kube_version(&src.kube_version)?));
            }
            _ => {
                if let Some(v) = base_spec.get(key) {
                    spec.insert(s(key), v.clone());
                }
            }
        }
    }
    for (k, v) in &base_spec {
        if !spec.contains_key(k) {
            spec.insert(k.clone(), v.clone());
        }
    }
    spec.insert(
        s("icon"),
        Value::Sequence(vec![map([
            (
                "base64data",
                s(&base64::engine::general_purpose::STANDARD.encode(&src.icon_svg)),
            ),
            ("mediatype", s("image/svg+xml")),
        ])]),
    );
    spec.insert(
        s("install"),
        map([
            ("strategy", s("deployment")),
            (
                "spec",
                map([
                    ("deployments", Value::Sequence(deployments)),
                    ("permissions", permissions(grants.namespaced)),
                    ("clusterPermissions", permissions(grants.cluster)),
                ]),
            ),
        ]),
    );
    let mut related: Vec<Value> = images
        .iter()
        .map(|(c, i)| map([("name", s(&format!("keystone-{c}"))), ("image", s(i))]))
        .collect();
    related.push(map([
        ("name", s("keystone")),
        ("image", s(&src.default_keystone_image)),
    ]));
    spec.insert(s("relatedImages"), Value::Sequence(related));

    let csv = map([
        ("apiVersion", s("operators.coreos.com/v1alpha1")),
        ("kind", s("ClusterServiceVersion")),
        (
            "metadata",
            map([
                ("name", s(&format!("{PACKAGE}.v{}", src.version))),
                ("annotations", Value::Mapping(annotations)),
            ]),
        ),
        ("spec", Value::Mapping(spec)),
    ]);
    files.insert(
        format!("bundle/manifests/{}", csv_file()),
        format!("{HEADER}{}", to_yaml("the CSV", &csv)?),
    );

    let mut meta = Mapping::new();
    for (k, v) in bundle_annotations() {
        meta.insert(s(k), s(&v));
    }
    files.insert(
        "bundle/metadata/annotations.yaml".to_owned(),
        format!(
            "{HEADER}{}",
            to_yaml("annotations.yaml", &map([("annotations", Value::Mapping(meta))]))?
        ),
    );

    let mut dockerfile = String::from(
        "# Generated by hack/gen-bundle.sh. Do not edit.\n\
         # The OLM bundle image: docker build -f bundle.Dockerfile -t <registry>/keystone-operator-bundle:<version> .\n\
         FROM scratch\n\n",
    );
    for (k, v) in bundle_annotations() {
        dockerfile.push_str(&format!("LABEL {k}={v}\n"));
    }
    dockerfile.push_str("\nCOPY bundle/manifests /manifests/\nCOPY bundle/metadata /metadata/\n");
    files.insert("bundle.Dockerfile".to_owned(), dockerfile);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_kube_version_from_the_chart_constraint() {
        assert_eq!(min_kube_version(">=1.31.0-0").unwrap(), "1.31.0");
        assert_eq!(min_kube_version(">= 1.30.2").unwrap(), "1.30.2");
        assert!(min_kube_version("^1.31").is_err());
        assert!(min_kube_version(">=1.31").is_err());
    }

    #[test]
    fn cluster_scoped_rules_are_recognised() {
        let crd: Value = serde_yaml::from_str(
            "{apiGroups: [apiextensions.k8s.io], resources: [customresourcedefinitions], verbs: [get]}",
        )
        .unwrap();
        let secrets: Value =
            serde_yaml::from_str("{apiGroups: [''], resources: [secrets], verbs: [get]}").unwrap();
        assert!(is_cluster_scoped(&crd));
        assert!(!is_cluster_scoped(&secrets));
    }

    #[test]
    fn a_deployment_that_already_sets_the_watch_namespace_is_refused() {
        let d: Value = serde_yaml::from_str(&format!(
            "{{kind: Deployment, metadata: {{name: x}}, spec: {{template: {{spec: {{containers: \
             [{{name: c, image: i, env: [{{name: {WATCH_NAMESPACE_ENV}, value: ns}}]}}]}}}}}}}}"
        ))
        .unwrap();
        let err = csv_deployment(&d).unwrap_err().to_string();
        assert!(err.contains(WATCH_NAMESPACE_ENV), "{err}");
    }
}
