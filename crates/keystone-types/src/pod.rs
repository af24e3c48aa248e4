//! The default (TCIB) image's pod contract, shared by the API Deployment and the db controller's Jobs:
//! `kolla_set_configs` copies the files listed in the rendered `config.json` into place; keystone runs as
//! uid/gid 42425; the key Secrets are mounted whole (no subPath) so rotations reach running pods.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar, PodSecurityContext, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};

use crate::names;

/// The image's keystone uid and gid.
pub const KEYSTONE_UID: i64 = 42425;
/// Where the config ConfigMap is mounted (kolla reads `config.json` from here).
pub const CONFIG_DIR: &str = "/var/lib/kolla/config_files";
/// Where the config Secret is mounted.
pub const SECRET_DIR: &str = "/var/lib/config-data/secret";
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

/// Volumes: the published config (ConfigMap + Secret), both key Secrets, and a scratch dir for httpd.
pub fn volumes(instance: &str, config_map: &str, config_secret: &str) -> Vec<Volume> {
    vec![
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
    ]
}

/// Mounts of [`volumes`].
pub fn mounts() -> Vec<VolumeMount> {
    vec![
        mount("config", CONFIG_DIR),
        mount("config-secret", SECRET_DIR),
        mount("fernet-keys", FERNET_KEYS_DIR),
        mount("credential-keys", CREDENTIAL_KEYS_DIR),
        VolumeMount {
            name: "run-httpd".into(),
            mount_path: "/run/httpd".into(),
            ..Default::default()
        },
    ]
}

/// `KOLLA_CONFIG_STRATEGY=COPY_ALWAYS`.
pub fn kolla_env() -> EnvVar {
    EnvVar {
        name: "KOLLA_CONFIG_STRATEGY".into(),
        value: Some("COPY_ALWAYS".into()),
        ..Default::default()
    }
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
