//! The pod contract with the Keystone image, shared by the API Deployment and the db controller's Jobs. Keystone
//! reads its configuration where the ConfigMap and Secret are mounted ([`CONFIG_FILES`]: `OS_KEYSTONE_CONFIG_FILES`
//! for the WSGI application, `--config-file` for keystone-manage), so nothing is copied at start and nothing
//! needs root: kolla's `kolla_set_configs` (the TCIB image's `kolla_start` runs it through sudo) cannot run
//! as the keystone user without privilege escalation, which the restricted profile forbids. What the image must
//! provide: Keystone, httpd with mod_wsgi (`/usr/sbin/httpd`, modules in `/etc/httpd/conf.modules.d`) and uid/gid
//! 42425. The key Secrets are mounted whole (no subPath) so rotations reach running pods.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar, KeyToPath, PodSecurityContext,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};

use crate::names;

/// The image's keystone uid and gid.
pub const KEYSTONE_UID: i64 = 42425;
/// Where the config ConfigMap is mounted (the path the TCIB image's kolla uses for it).
pub const CONFIG_DIR: &str = "/var/lib/kolla/config_files";
/// Where the config Secret is mounted.
pub const SECRET_DIR: &str = "/var/lib/config-data/secret";
/// Keystone's configuration files, in the order oslo.config reads them (later ones win): the rendered
/// keystone.conf, the options holding secrets, `customServiceConfig`, `customServiceConfigSecret` (the last two
/// are always rendered, empty when unset, so the list is fixed).
pub const CONFIG_FILES: [&str; 4] = [
    "/var/lib/kolla/config_files/keystone.conf",
    "/var/lib/config-data/secret/00-secrets.conf",
    "/var/lib/kolla/config_files/10-custom.conf",
    "/var/lib/config-data/secret/20-custom-secret.conf",
];
/// Where the domain-specific configuration files are mounted (`[identity] domain_config_dir`).
pub const DOMAINS_DIR: &str = "/etc/keystone/domains";
/// The `defaultConfigOverwrite` key prefix of domain-specific configuration files.
pub const DOMAINS_PREFIX: &str = "domains/";
/// Token key repository.
pub const FERNET_KEYS_DIR: &str = "/etc/keystone/fernet-keys";
/// Credential key repository.
pub const CREDENTIAL_KEYS_DIR: &str = "/etc/keystone/credential-keys";

fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.into(),
        // Secret files are root-owned: 0440 with fsGroup 42425 lets keystone read them, and nobody else.
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The ConfigMap key of a `defaultConfigOverwrite` file (keys cannot hold '/': `domains/keystone.<d>.conf` is
/// stored as `domains.keystone.<d>.conf`).
pub fn overwrite_key(file: &str) -> String {
    file.replace('/', ".")
}

/// The domain-specific configuration files (`keystone.<domain>.conf`) of a `defaultConfigOverwrite`.
pub fn domain_files<'a>(files: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    files
        .into_iter()
        .filter_map(|f| f.strip_prefix(DOMAINS_PREFIX).map(str::to_owned))
        .collect()
}

/// Volumes: the published config (ConfigMap + Secret), both key Secrets, a scratch dir for httpd, and, when
/// there are any, the domain-specific configuration files (from the ConfigMap, under their own names).
pub fn volumes(
    instance: &str,
    config_map: &str,
    config_secret: &str,
    domain_files: &[String],
) -> Vec<Volume> {
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_owned(),
                default_mode: Some(0o444),
                ..Default::default()
            }),
            ..Default::default()
        },
        secret_volume("config-secret", config_secret.to_owned()),
        secret_volume("fernet-keys", names::fernet_keys_secret(instance)),
        secret_volume("credential-keys", names::credential_keys_secret(instance)),
        Volume {
            name: "run-httpd".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    if !domain_files.is_empty() {
        volumes.push(Volume {
            name: "domains".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_owned(),
                default_mode: Some(0o444),
                items: Some(
                    domain_files
                        .iter()
                        .map(|f| KeyToPath {
                            key: overwrite_key(&format!("{DOMAINS_PREFIX}{f}")),
                            path: f.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                // the spec can be newer than the published ConfigMap: a missing file is skipped, not fatal
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    volumes
}

/// Mounts of [`volumes`].
pub fn mounts(domain_files: &[String]) -> Vec<VolumeMount> {
    let mut mounts = vec![
        mount("config", CONFIG_DIR),
        mount("config-secret", SECRET_DIR),
        mount("fernet-keys", FERNET_KEYS_DIR),
        mount("credential-keys", CREDENTIAL_KEYS_DIR),
        VolumeMount {
            name: "run-httpd".into(),
            mount_path: "/run/httpd".into(),
            ..Default::default()
        },
    ];
    if !domain_files.is_empty() {
        mounts.push(mount("domains", DOMAINS_DIR));
    }
    mounts
}

/// `OS_KEYSTONE_CONFIG_FILES`: where Keystone's WSGI application reads its configuration ([`CONFIG_FILES`]).
pub fn config_files_env() -> EnvVar {
    EnvVar {
        name: "OS_KEYSTONE_CONFIG_FILES".into(),
        value: Some(CONFIG_FILES.join(";")),
        ..Default::default()
    }
}

/// `--config-file …` for keystone-manage ([`CONFIG_FILES`]).
pub fn config_file_args() -> String {
    CONFIG_FILES
        .iter()
        .map(|f| format!("--config-file {f}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pod security context: uid/gid/fsGroup 42425, non-root, seccomp RuntimeDefault.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(KEYSTONE_UID),
        run_as_group: Some(KEYSTONE_UID),
        fs_group: Some(KEYSTONE_UID),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Container security context: no privilege escalation, all capabilities dropped.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        run_as_non_root: Some(true),
        ..Default::default()
    }
}
