//! A container's environment as the kubelet builds it: `envFrom` first, then `env` in order, with
//! `valueFrom` (Secret and ConfigMap keys, pod fields) and `$(VAR)` references to earlier variables.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

/// The Secrets and ConfigMaps of the pod's namespace that the pod refers to, by name.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
}

impl Sources {
    fn secret_key(&self, name: &str, key: &str) -> Option<String> {
        let s = self.secrets.get(name)?;
        let v = s.data.as_ref()?.get(key)?;
        Some(String::from_utf8_lossy(&v.0).into_owned())
    }

    fn config_map_key(&self, name: &str, key: &str) -> Option<String> {
        self.config_maps.get(name)?.data.as_ref()?.get(key).cloned()
    }
}

/// Expands `$(NAME)` from `vars`; `$$(NAME)` is a literal `$(NAME)`; unknown references stay as written.
pub fn expand(s: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$(")
            && let Some(end) = t.find(')')
        {
            let name = &t[..end];
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A pod field for `fieldRef` (env and downward API volumes).
pub fn field(pod: &Pod, path: &str, pod_ip: &str, node: &str) -> Option<String> {
    let meta = &pod.metadata;
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(node.to_owned()),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.podIP" => Some(pod_ip.to_owned()),
        "status.hostIP" => Some(pod_ip.to_owned()),
        p => {
            let key = p
                .strip_prefix("metadata.labels['")
                .map(|k| (true, k))
                .or_else(|| p.strip_prefix("metadata.annotations['").map(|k| (false, k)))?;
            let name = key.1.strip_suffix("']")?;
            let map = if key.0 {
                meta.labels.as_ref()
            } else {
                meta.annotations.as_ref()
            };
            map?.get(name).cloned()
        }
    }
}

/// The environment of `container`, or why it cannot be built (a missing, non-optional key: the kubelet
/// keeps such a container waiting with `CreateContainerConfigError`).
pub fn resolve(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    pod_ip: &str,
    node: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        vars.push((format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned()));
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(c) => {
                    for (k, v) in c.data.iter().flatten() {
                        vars.push((format!("{prefix}{k}"), v.clone()));
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            Some(expand(v, &vars))
        } else if let Some(from) = &e.value_from {
            if let Some(r) = &from.secret_key_ref {
                match sources.secret_key(&r.name, &r.key) {
                    Some(v) => Some(v),
                    None if r.optional.unwrap_or(false) => None,
                    None => {
                        return Err(format!(
                            "secret {:?} has no key {:?} (env {})",
                            r.name, r.key, e.name
                        ));
                    }
                }
            } else if let Some(r) = &from.config_map_key_ref {
                match sources.config_map_key(&r.name, &r.key) {
                    Some(v) => Some(v),
                    None if r.optional.unwrap_or(false) => None,
                    None => {
                        return Err(format!(
                            "configmap {:?} has no key {:?} (env {})",
                            r.name, r.key, e.name
                        ));
                    }
                }
            } else if let Some(r) = &from.field_ref {
                field(pod, &r.field_path, pod_ip, node)
            } else {
                return Err(format!("env {}: unsupported valueFrom", e.name));
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            vars.push((e.name.clone(), v));
        }
    }
    Ok(vars)
}

/// The names of the Secrets and ConfigMaps a pod refers to (volumes and env).
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut secrets, mut cms) = (Vec::new(), Vec::new());
    let Some(spec) = &pod.spec else {
        return (secrets, cms);
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = &v.secret
            && let Some(n) = &s.secret_name
        {
            secrets.push(n.clone());
        }
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                secrets.push(s.name.clone());
            }
            if let Some(c) = &src.config_map {
                cms.push(c.name.clone());
            }
        }
    }
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.secret_ref {
                secrets.push(r.name.clone());
            }
            if let Some(r) = &f.config_map_ref {
                cms.push(r.name.clone());
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(r) = &from.secret_key_ref {
                    secrets.push(r.name.clone());
                }
                if let Some(r) = &from.config_map_key_ref {
                    cms.push(r.name.clone());
                }
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    cms.sort();
    cms.dedup();
    (secrets, cms)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::expand;

    #[rstest]
    #[case("plain", "plain")]
    #[case("$(A)/x", "1/x")]
    #[case("$$(A)", "$(A)")]
    #[case("$(B)", "$(B)")]
    #[case("a$b", "a$b")]
    #[case("$(A)$(A)", "11")]
    fn expands(#[case] input: &str, #[case] want: &str) {
        assert_eq!(expand(input, &[("A".into(), "1".into())]), want);
    }
}
