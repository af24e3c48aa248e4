//! The db-create, db-sync and bootstrap Jobs and the trust-flush CronJob. Every Job is named after its inputs
//! hash (a Job's pod template is immutable, so each run is a new Job). Passwords reach the pods only through
//! `secretKeyRef` environment variables, never as arguments or in a ConfigMap. The keystone-manage Jobs mount
//! the configuration the api controller published as the API pods do and read it in place (`--config-file`).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use keystone_types::conditions::Controller;
use keystone_types::{KeystoneAPI, labels, names, pod};

/// Job label and annotation: the inputs hash of this run.
pub const INPUTS_HASH: &str = "keystone.openstack.org/inputs-hash";
/// Job annotation: which attempt this is (automatic retries after a failed Job).
pub const ATTEMPT: &str = "keystone.openstack.org/attempt";

/// The published configuration the Jobs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedConfig {
    /// ConfigMap name.
    pub config_map: String,
    /// Secret name.
    pub config_secret: String,
}

/// Creates the database and user (idempotently) and sets the user's password, then connects as that user;
/// with `DB_CREATE=false` it only connects. Uses the image's own Python and PyMySQL (Keystone's MySQL driver),
/// so no separate client image is needed; values go through PyMySQL's escaping, so any password works.
pub const DB_CREATE_SCRIPT: &str = r#"
import os, sys
import pymysql
host, port = os.environ["DB_HOST"], int(os.environ["DB_PORT"])
name, user, password = os.environ["DB_NAME"], os.environ["DB_USER"], os.environ["DB_PASSWORD"]
if os.environ.get("DB_CREATE") == "true":
    # passwords as UTF-8 bytes: PyMySQL would encode a str as latin-1 in the handshake, which fails for (or
    # mangles) non-ASCII characters, while the server stores what IDENTIFIED BY received over utf8mb4
    root = pymysql.connect(host=host, port=port, user="root", password=os.environ["DB_ROOT_PASSWORD"].encode(),
                           charset="utf8mb4", autocommit=True)
    with root.cursor() as cur:
        # the database name is restricted to [A-Za-z0-9_] by the CRD; identifiers cannot be bound parameters
        cur.execute("CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4" % name)
        for h in ("%", "localhost"):
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, h, password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, h, password))
            cur.execute("GRANT ALL PRIVILEGES ON `%s`.* TO %%s@%%s" % name, (user, h))
    root.close()
conn = pymysql.connect(host=host, port=port, user=user, password=password.encode(), database=name, charset="utf8mb4")
# Encrypted credentials already there (a database that outlived its KeystoneAPI, or came from elsewhere): the
# operator must not make new credential keys that cannot decrypt them. Reported through the termination
# message, which the db controller reads from the pod.
with conn.cursor() as cur:
    cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'credential'",
                (name,))
    stored = 0
    if cur.fetchone()[0]:
        cur.execute("SELECT COUNT(*) FROM credential")
        stored = cur.fetchone()[0]
conn.close()
with open(os.environ.get("TERMINATION_LOG", "/dev/termination-log"), "w") as log:
    log.write("storedCredentials=%d" % stored)
print("database %s is reachable as %s; it holds %d encrypted credentials" % (name, user, stored))
"#;

/// Reads the count [`DB_CREATE_SCRIPT`] leaves in its termination message.
pub fn stored_credentials(termination_message: &str) -> Option<i64> {
    termination_message
        .trim()
        .strip_prefix("storedCredentials=")?
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn meta(ks: &KeystoneAPI, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ks.namespace(),
        labels: Some(labels::child_labels(&ks.name_any(), component, Controller::Db)),
        owner_references: ks.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

fn pod_template(
    ks: &KeystoneAPI,
    component: &str,
    container: Container,
    config: Option<&PublishedConfig>,
) -> PodTemplateSpec {
    let mut annotations = BTreeMap::new();
    if !ks.spec.network_attachments.is_empty() {
        annotations.insert(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            ks.spec.network_attachments.join(","),
        );
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels::child_labels(&ks.name_any(), component, Controller::Db)),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            containers: vec![container],
            volumes: config.map(|c| {
                pod::volumes(
                    &ks.name_any(),
                    &c.config_map,
                    &c.config_secret,
                    &pod::domain_files(ks.spec.default_config_overwrite.keys()),
                )
            }),
            security_context: Some(pod::pod_security_context()),
            node_selector: ks.spec.node_selector.clone(),
            tolerations: ks.spec.tolerations.clone(),
            ..Default::default()
        }),
    }
}

/// How long any Job may run before Kubernetes stops it (reason `DeadlineExceeded`, then reported and retried
/// like any failure): far above a db-sync across releases on a large database, far below "forever" for a pod
/// stuck on an unreachable database or a hung migration.
pub const JOB_DEADLINE_SECONDS: i64 = 3600;

fn job(
    ks: &KeystoneAPI,
    base: &str,
    component: &str,
    hash: &str,
    attempt: u32,
    template: PodTemplateSpec,
) -> Job {
    let mut metadata = meta(ks, job_name(base, hash, attempt), component);
    if let Some(l) = metadata.labels.as_mut() {
        l.insert(INPUTS_HASH.to_owned(), hash.to_owned());
    }
    metadata.annotations = Some(BTreeMap::from([
        (INPUTS_HASH.to_owned(), hash.to_owned()),
        (ATTEMPT.to_owned(), attempt.to_string()),
    ]));
    Job {
        metadata,
        spec: Some(JobSpec {
            // one pod per Job: retries are new Jobs started by the controller with its own capped back-off,
            // so each attempt's logs stay apart and the next attempt's time can be reported
            backoff_limit: Some(0),
            ttl_seconds_after_finished: if ks.spec.preserve_jobs { None } else { Some(3600) },
            active_deadline_seconds: Some(JOB_DEADLINE_SECONDS),
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn keystone_manage(ks: &KeystoneAPI, args: &str, env: Vec<EnvVar>) -> Container {
    Container {
        name: "keystone-manage".into(),
        image: Some(ks.spec.container_image.clone()),
        // fixed strings only: nothing from the spec is interpolated into the shell
        command: Some(vec![
            "/bin/bash".into(),
            "-c".into(),
            format!("exec keystone-manage {} {args}", pod::config_file_args()),
        ]),
        env: (!env.is_empty()).then_some(env),
        volume_mounts: Some(pod::mounts(&pod::domain_files(
            ks.spec.default_config_overwrite.keys(),
        ))),
        security_context: Some(pod::container_security_context()),
        ..Default::default()
    }
}

/// The Job creating the database and user (or checking the connection with `create: false`).
pub fn db_create_job(ks: &KeystoneAPI, hash: &str, attempt: u32) -> Job {
    let s = &ks.spec;
    let d = &s.database;
    let mut env_vars = vec![
        env("DB_HOST", d.host.clone()),
        env("DB_PORT", d.port.to_string()),
        env("DB_NAME", d.name.clone()),
        env("DB_USER", d.user.clone()),
        env("DB_CREATE", d.create.to_string()),
        secret_env("DB_PASSWORD", &s.secret, &s.password_selectors.database),
    ];
    if d.create {
        env_vars.push(secret_env(
            "DB_ROOT_PASSWORD",
            &s.secret,
            &s.password_selectors.database_root,
        ));
    }
    let container = Container {
        name: "db-create".into(),
        image: Some(s.container_image.clone()),
        command: Some(vec![
            "/usr/bin/python3".into(),
            "-c".into(),
            DB_CREATE_SCRIPT.into(),
        ]),
        env: Some(env_vars),
        security_context: Some(pod::container_security_context()),
        ..Default::default()
    };
    job(
        ks,
        &names::db_create_job(&ks.name_any()),
        labels::component::DB_CREATE,
        hash,
        attempt,
        pod_template(ks, labels::component::DB_CREATE, container, None),
    )
}

/// The db-sync Job.
pub fn db_sync_job(ks: &KeystoneAPI, config: &PublishedConfig, hash: &str, attempt: u32) -> Job {
    let container = keystone_manage(ks, "db_sync", vec![]);
    job(
        ks,
        &names::db_sync_job(&ks.name_any()),
        labels::component::DB_SYNC,
        hash,
        attempt,
        pod_template(ks, labels::component::DB_SYNC, container, Some(config)),
    )
}

/// The bootstrap Job: admin user, project and role, the identity service, region and endpoints.
pub fn bootstrap_job(
    ks: &KeystoneAPI,
    config: &PublishedConfig,
    public: &str,
    internal: &str,
    hash: &str,
    attempt: u32,
) -> Job {
    let s = &ks.spec;
    let container = keystone_manage(
        ks,
        "bootstrap",
        vec![
            env("OS_BOOTSTRAP_USERNAME", s.admin_user.clone()),
            env("OS_BOOTSTRAP_PROJECT_NAME", s.admin_project.clone()),
            env("OS_BOOTSTRAP_SERVICE_NAME", "keystone"),
            env("OS_BOOTSTRAP_REGION_ID", s.region.clone()),
            env("OS_BOOTSTRAP_PUBLIC_URL", public),
            env("OS_BOOTSTRAP_INTERNAL_URL", internal),
            secret_env("OS_BOOTSTRAP_PASSWORD", &s.secret, &s.password_selectors.admin),
        ],
    );
    job(
        ks,
        &names::bootstrap_job(&ks.name_any()),
        labels::component::BOOTSTRAP,
        hash,
        attempt,
        pod_template(ks, labels::component::BOOTSTRAP, container, Some(config)),
    )
}

/// The `credential_migrate` Job of a credential key rotation: it first checks that it mounted the credential
/// key set it was started for (`keys_hash`, the fernet controller's fingerprint), then re-encrypts every stored
/// credential with that set's primary key. `hash` identifies the run (see `inputs::credential_migrate`).
pub fn credential_migrate_job(
    ks: &KeystoneAPI,
    config: &PublishedConfig,
    keys_hash: &str,
    hash: &str,
    attempt: u32,
) -> Job {
    let mut container = keystone_manage(
        ks,
        "credential_migrate",
        vec![
            env("CREDENTIAL_KEYS_HASH", keys_hash),
            env("CREDENTIAL_KEYS_DIR", pod::CREDENTIAL_KEYS_DIR),
            env(
                "KEYS_CHECK",
                keystone_types::credential_rotation::KEYS_CHECK_SCRIPT,
            ),
        ],
    );
    container.command = Some(vec![
        "/bin/bash".into(),
        "-c".into(),
        format!(
            "python3 -c \"$KEYS_CHECK\" && exec keystone-manage {} credential_migrate",
            pod::config_file_args()
        ),
    ]);
    job(
        ks,
        &names::credential_migrate_job(&ks.name_any()),
        labels::component::CREDENTIAL_MIGRATE,
        hash,
        attempt,
        pod_template(ks, labels::component::CREDENTIAL_MIGRATE, container, Some(config)),
    )
}

/// The trust-flush CronJob.
pub fn trust_flush_cronjob(ks: &KeystoneAPI, config: &PublishedConfig) -> CronJob {
    let container = keystone_manage(ks, "trust_flush", vec![]);
    let template = pod_template(ks, labels::component::TRUST_FLUSH, container, Some(config));
    CronJob {
        metadata: meta(
            ks,
            names::trust_flush_cronjob(&ks.name_any()),
            labels::component::TRUST_FLUSH,
        ),
        spec: CronJobSpec {
            schedule: ks.spec.trust_flush.schedule.clone(),
            suspend: Some(ks.spec.trust_flush.suspend),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    backoff_limit: Some(1),
                    active_deadline_seconds: Some(JOB_DEADLINE_SECONDS),
                    template,
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `<base>-<first 8 hex digits of the inputs hash>-<attempt>`: one Job per inputs and attempt.
pub fn job_name(base: &str, hash: &str, attempt: u32) -> String {
    format!("{base}-{}-{attempt}", &hash[..hash.len().min(8)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keystone() -> KeystoneAPI {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
            "metadata": {"name": "keystone", "namespace": "openstack", "uid": "00000000-0000-4000-8000-000000000001"},
            "spec": {"containerImage": "img:1", "secret": "osp-secret", "replicas": 1, "region": "regionOne",
                "adminUser": "admin", "adminProject": "admin", "preserveJobs": false, "networkAttachments": ["storage"],
                "passwordSelectors": {"admin": "AdminPassword", "database": "KeystoneDatabasePassword", "databaseRoot": "DbRootPassword"},
                "database": {"host": "openstack", "port": 3306, "name": "keystone", "user": "keystone", "create": true},
                "trustFlush": {"schedule": "1 * * * *", "suspend": false}}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn config() -> PublishedConfig {
        PublishedConfig {
            config_map: "keystone-config-abcd".into(),
            config_secret: "keystone-config-secret-abcd".into(),
        }
    }

    #[test]
    fn passwords_reach_jobs_only_through_secret_key_refs() {
        let ks = keystone();
        let jobs = [
            db_create_job(&ks, "0123456789abcdef", 0),
            db_sync_job(&ks, &config(), "0123456789abcdef", 0),
            bootstrap_job(&ks, &config(), "http://p", "http://i", "0123456789abcdef", 0),
        ];
        for j in &jobs {
            let c = &j
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers[0];
            for e in c.env.iter().flatten() {
                if e.name.contains("PASSWORD") {
                    assert!(e.value.is_none(), "{} has a literal value", e.name);
                    assert_eq!(
                        e.value_from
                            .as_ref()
                            .unwrap()
                            .secret_key_ref
                            .as_ref()
                            .unwrap()
                            .name,
                        "osp-secret"
                    );
                }
            }
            let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            assert_eq!(pod.automount_service_account_token, Some(false));
            assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
            let ann = j
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap();
            assert_eq!(ann["k8s.v1.cni.cncf.io/networks"], "storage");
            assert!(j.metadata.name.as_ref().unwrap().ends_with("-01234567-0"));
            assert_eq!(j.spec.as_ref().unwrap().ttl_seconds_after_finished, Some(3600));
            assert_eq!(
                j.spec.as_ref().unwrap().active_deadline_seconds,
                Some(JOB_DEADLINE_SECONDS),
                "a stuck Job must end"
            );
        }
        let boot = &jobs[2]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        let e: BTreeMap<_, _> = boot
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.clone()))
            .collect();
        assert_eq!(e["OS_BOOTSTRAP_PUBLIC_URL"].value.as_deref(), Some("http://p"));
        assert_eq!(
            e["OS_BOOTSTRAP_PASSWORD"]
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .key,
            "AdminPassword"
        );
        let sync = &jobs[1]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(
            sync.command.as_ref().unwrap()[2],
            format!("exec keystone-manage {} db_sync", pod::config_file_args())
        );
    }

    #[test]
    fn snapshots_of_every_job_and_the_cronjob() {
        let ks = keystone();
        let objects: [(&str, String); 4] = [
            (
                "db_create",
                serde_yaml::to_string(&db_create_job(&ks, "0123456789abcdef", 0)).unwrap_or_default(),
            ),
            (
                "db_sync",
                serde_yaml::to_string(&db_sync_job(&ks, &config(), "0123456789abcdef", 0))
                    .unwrap_or_default(),
            ),
            (
                "bootstrap",
                serde_yaml::to_string(&bootstrap_job(
                    &ks,
                    &config(),
                    "http://p",
                    "http://i",
                    "0123456789abcdef",
                    0,
                ))
                .unwrap_or_default(),
            ),
            (
                "trust_flush",
                serde_yaml::to_string(&trust_flush_cronjob(&ks, &config())).unwrap_or_default(),
            ),
        ];
        for (name, yaml) in objects {
            insta::assert_snapshot!(name, yaml);
        }
    }

    #[test]
    fn preserved_jobs_do_not_expire() {
        let mut ks = keystone();
        ks.spec.preserve_jobs = true;
        let j = db_sync_job(&ks, &config(), "0123456789abcdef", 2);
        assert_eq!(j.spec.as_ref().unwrap().ttl_seconds_after_finished, None);
        assert_eq!(j.metadata.name.as_deref(), Some("keystone-db-sync-01234567-2"));
        assert_eq!(j.annotations()[ATTEMPT], "2");
    }

    #[test]
    fn cronjob_follows_the_spec() {
        let mut ks = keystone();
        ks.spec.trust_flush.suspend = true;
        let cj = trust_flush_cronjob(&ks, &config());
        let spec = cj.spec;
        assert_eq!(spec.schedule, "1 * * * *");
        assert_eq!(spec.suspend, Some(true));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(cj.metadata.name.as_deref(), Some("keystone-trust-flush"));
    }

    #[test]
    fn the_stored_credential_count_is_read_only_from_the_scripts_own_line() {
        assert_eq!(stored_credentials("storedCredentials=0"), Some(0));
        assert_eq!(stored_credentials("storedCredentials=12\n"), Some(12));
        for other in [
            "",
            "storedCredentials=",
            "storedCredentials=-1",
            "storedCredentials=x",
            "Error: boom",
        ] {
            assert_eq!(stored_credentials(other), None, "{other:?}");
        }
    }
}
