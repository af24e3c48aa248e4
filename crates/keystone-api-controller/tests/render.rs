//! Snapshots of every rendered file (insta): the defaults, the seed examples and every option; passwords
//! with `$`, `%`, `{{`, `&`, quotes and newlines render safely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use keystone_api_controller::config::Templates;
use keystone_api_controller::read::Inputs;
use keystone_api_controller::validate::validate;
use keystone_types::KeystoneAPI;
use operator_common::hmac::Key;

fn keystone(spec: Value) -> KeystoneAPI {
    // Defaults as the API server applies them, then the test's fields.
    let mut full = json!({
        "containerImage": "quay.io/podified-antelope-centos9/openstack-keystone:current-podified",
        "replicas": 1, "secret": "osp-secret",
        "passwordSelectors": {"admin": "AdminPassword", "database": "KeystoneDatabasePassword", "databaseRoot": "DbRootPassword"},
        "region": "regionOne", "adminUser": "admin", "adminProject": "admin",
        "database": {"host": "openstack", "port": 3306, "name": "keystone", "user": "keystone", "create": true},
        "fernet": {"rotationInterval": "24h", "maxActiveKeys": 5},
        "token": {"expiration": "1h", "allowExpiredWindow": "48h"},
        "preserveJobs": false, "enableSecureRBAC": true,
        "trustFlush": {"schedule": "1 * * * *", "suspend": false},
    });
    if let (Some(base), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
        "metadata": {"name": "keystone", "namespace": "openstack", "uid": "00000000-0000-4000-8000-000000000001", "generation": 1},
        "spec": full,
    }))
    .unwrap()
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

const PASSWORD: &str = "db-'Pa$$`w0rd\"%{{x}}& z@:/?#;";

fn inputs() -> Inputs {
    Inputs {
        password_secret: Some(secret("osp-secret", &[("KeystoneDatabasePassword", PASSWORD)])),
        ..Default::default()
    }
}

fn key(byte: u8) -> Key {
    Key::from_bytes(vec![byte; operator_common::hmac::KEY_LEN]).unwrap()
}

fn render(ks: &KeystoneAPI, inputs: &Inputs) -> keystone_api_controller::config::Rendered {
    render_with(ks, inputs, &key(1))
}

fn render_with(ks: &KeystoneAPI, inputs: &Inputs, key: &Key) -> keystone_api_controller::config::Rendered {
    let v = validate(ks, inputs).unwrap_or_else(|e| panic!("invalid: {e}"));
    Templates::new().unwrap().render(&v, key).unwrap()
}

fn snapshot(name: &str, r: &keystone_api_controller::config::Rendered) {
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &r.config_map {
        all.insert(format!("configmap/{k}"), v.clone());
    }
    for (k, v) in &r.secret {
        all.insert(format!("secret/{k}"), v.clone());
    }
    for (file, content) in all {
        insta::assert_snapshot!(format!("{name}__{}", file.replace('/', "_")), content);
    }
}

#[test]
fn defaults() {
    let r = render(&keystone(json!({})), &inputs());
    snapshot("defaults", &r);
    // No password in the URL (Keystone's db_sync cannot take a `%` there): it is in the option file, as is.
    let db = &r.secret["00-secrets.conf"];
    assert!(
        db.contains("connection = mysql+pymysql://keystone@openstack:3306/keystone?charset=utf8&read_default_file=/var/lib/config-data/secret/my.cnf\n"),
        "{db}"
    );
    assert!(!db.contains("w0rd") && !db.contains('%'), "{db}");
    assert!(r.secret["my.cnf"].contains(&format!("password = \"{PASSWORD}\"\n")));
    for (k, v) in &r.config_map {
        assert!(!v.contains("w0rd"), "password leaked into ConfigMap file {k}");
    }
}

#[test]
fn every_option() {
    let spec = json!({
        "memcachedServers": ["memcached-0.memcached:11211", "[fd00::5]:11211"],
        "token": {"expiration": "2h", "allowExpiredWindow": "24h"},
        "fernet": {"rotationInterval": "12h", "maxActiveKeys": 7},
        "enableSecureRBAC": false,
        "customServiceConfig": "[DEFAULT]\ndebug = true\n",
        "customServiceConfigSecret": "ldap",
        "defaultConfigOverwrite": {
            "policy.yaml": "\"identity:list_users\": \"role:admin\"\n",
            "logging.conf": "[loggers]\nkeys = root\n",
            "domains/keystone.ldap.conf": "[identity]\ndriver = ldap\n",
        },
        "notifications": {"secret": "rabbit", "key": "url"},
        "networkAttachments": ["storage"],
    });
    let mut i = inputs();
    i.custom_secret = Some(secret("ldap", &[("ldap.conf", "[ldap]\npassword = b1nd$pw\n")]));
    i.notifications_secret = Some(secret("rabbit", &[("url", "rabbit://u:p$w@rabbitmq:5672/")]));
    let r = render(&keystone(spec), &i);
    snapshot("every_option", &r);
    assert!(r.secret["00-secrets.conf"].contains("transport_url = rabbit://u:p$$w@rabbitmq:5672/"));
    assert!(r.config_map.contains_key("domains.keystone.ldap.conf"));
}

#[test]
fn rendering_is_deterministic_and_the_hash_follows_content() {
    let a = render(&keystone(json!({})), &inputs());
    let b = render(&keystone(json!({})), &inputs());
    assert_eq!(a, b);
    let c = render(&keystone(json!({"memcachedServers": ["m:11211"]})), &inputs());
    assert_ne!(a.hash, c.hash);
    let mut other = inputs();
    other.password_secret = Some(secret("osp-secret", &[("KeystoneDatabasePassword", "other")]));
    assert_ne!(
        a.hash,
        render(&keystone(json!({})), &other).hash,
        "a password change must change the config"
    );
    assert!(
        !format!("{a:?}").contains("w0rd"),
        "Debug of the rendered config shows secret content"
    );
}

/// Whoever reads the config hash (status.api.configHash, the versioned object names, the pod annotation) and
/// the ConfigMap knows every input of the hash but the database password. A plain digest of the files would
/// let them test password guesses offline; under the instance's HMAC key it does not.
#[test]
fn the_config_hash_lets_nobody_test_a_password_guess() {
    use sha2::{Digest, Sha256};
    let r = render(&keystone(json!({})), &inputs());
    // The attacker guessed the password right and knows the layout of every file, so they can rebuild the
    // Secret's content exactly: all they lack is the key.
    let guess = r.secret.clone();
    let mut h = Sha256::new();
    for (tag, map) in [("cm", &r.config_map), ("secret", &guess)] {
        for (k, c) in map {
            for part in [tag, k.as_str(), c.as_str()] {
                h.update(part.as_bytes());
                h.update([0]);
            }
        }
    }
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_ne!(
        r.hash,
        digest[..16],
        "the config hash is a plain digest of content an attacker can reconstruct"
    );
    // Another instance's key gives another hash for the same files; the same key, the same hash.
    let other = render_with(&keystone(json!({})), &inputs(), &key(2));
    assert_eq!(r.config_map, other.config_map);
    assert_ne!(r.hash, other.hash);
    assert_eq!(r.hash, render_with(&keystone(json!({})), &inputs(), &key(1)).hash);
    assert_eq!(r.hash.len(), 16);
}

#[test]
fn operator_owned_options_and_missing_inputs_are_refused_naming_the_field() {
    let ks = keystone(json!({"customServiceConfig": "[token]\nexpiration = 60\n"}));
    let err = validate(&ks, &inputs()).unwrap_err();
    assert!(
        err.contains("spec.customServiceConfig sets [token] expiration")
            && err.contains("spec.token.expiration"),
        "{err}"
    );
    let mut i = inputs();
    i.custom_secret = Some(secret("s", &[("x", "[database]\nconnection = sqlite://\n")]));
    let err = validate(&keystone(json!({"customServiceConfigSecret": "s"})), &i).unwrap_err();
    assert!(
        err.contains("spec.customServiceConfigSecret sets [database] connection"),
        "{err}"
    );
    let err = validate(&keystone(json!({})), &Inputs::default()).unwrap_err();
    assert!(err.contains("Secret osp-secret (spec.secret) not found"), "{err}");
    let newline = Inputs {
        password_secret: Some(secret("osp-secret", &[("KeystoneDatabasePassword", "a\nb")])),
        ..Default::default()
    };
    let err = validate(&keystone(json!({})), &newline).unwrap_err();
    assert!(
        err.contains("KeystoneDatabasePassword of Secret osp-secret") && err.contains("line break"),
        "{err}"
    );
    let i = Inputs {
        password_secret: Some(secret("osp-secret", &[("AdminPassword", "x")])),
        ..Default::default()
    };
    let err = validate(&keystone(json!({})), &i).unwrap_err();
    assert!(
        err.contains("no key KeystoneDatabasePassword (spec.passwordSelectors.database)"),
        "{err}"
    );
}

/// The rendered httpd site is written for the image's CentOS httpd (`ServerRoot /etc/httpd`, modules from
/// `conf.modules.d/`). Debian's Apache checks its syntax: the file as rendered, except `ServerRoot` pointed at
/// a directory whose `conf.modules.d/` loads Debian's builds of the same modules (mod_wsgi included).
#[test]
fn httpd_site_passes_apaches_syntax_check() {
    let apache = std::path::Path::new("/usr/sbin/apache2");
    assert!(
        apache.exists(),
        "/usr/sbin/apache2 is missing: run hack/install-test-deps.sh (apache2-bin, libapache2-mod-wsgi-py3)"
    );
    let root = std::env::temp_dir().join(format!("httpd-check-{}", std::process::id()));
    std::fs::create_dir_all(root.join("conf.modules.d")).unwrap();
    let modules = "/usr/lib/apache2/modules";
    std::fs::write(
        root.join("conf.modules.d/00-base.conf"),
        format!(
            "LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
             LoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LoadModule mime_module {modules}/mod_mime.so\n\
             LoadModule setenvif_module {modules}/mod_setenvif.so\n\
             LoadModule wsgi_module {modules}/mod_wsgi.so\n"
        ),
    )
    .unwrap();
    // The site varies only in names and the process count, all covered by the defaults.
    let r = render(&keystone(json!({})), &inputs());
    let site = &r.config_map["httpd.conf"];
    assert!(site.contains("ServerRoot \"/etc/httpd\""), "{site}");
    let file = root.join("httpd.conf");
    std::fs::write(
        &file,
        site.replace(
            "ServerRoot \"/etc/httpd\"",
            &format!("ServerRoot \"{}\"", root.display()),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(apache)
        .arg("-t")
        .arg("-f")
        .arg(&file)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "apache2 -t:\n{text}\n{site}");
    assert!(text.contains("Syntax OK"), "{text}");
    // And it does reject what it should: a directive of a module that is not loaded.
    std::fs::write(
        &file,
        format!(
            "{}\nProxyPass / http://x/\n",
            std::fs::read_to_string(&file).unwrap()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(apache)
        .arg("-t")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&root);
}

/// Objects stored before admission checked these fields are checked again before anything is rendered: a
/// line break in the database host or a memcached server would add lines to a config file, a transport URL
/// with one would too, and `500ms` would be a zero token lifetime.
#[test]
fn hostile_values_stored_before_admission_are_refused_at_reconcile() {
    let cases = [
        (
            json!({"database": {"host": "db\n[token]\nexpiration = 1", "port": 3306, "name": "keystone",
                             "user": "keystone", "create": true}}),
            "spec.database.host",
        ),
        (
            json!({"memcachedServers": ["m:11211\r[cache]"]}),
            "spec.memcachedServers",
        ),
        (
            json!({"token": {"expiration": "500ms", "allowExpiredWindow": "48h"}}),
            "spec.token.expiration",
        ),
        (
            json!({"token": {"expiration": "1h", "allowExpiredWindow": "1.5s"}}),
            "spec.token.allowExpiredWindow",
        ),
        (
            json!({"fernet": {"rotationInterval": "24h", "maxActiveKeys": -1}}),
            "spec.fernet.maxActiveKeys",
        ),
    ];
    for (spec, field) in cases {
        let err = validate(&keystone(spec.clone()), &inputs()).unwrap_err();
        assert!(err.contains(field), "{spec}: {err}");
    }
    let mut i = inputs();
    i.notifications_secret = Some(secret(
        "rabbit",
        &[("url", "rabbit://h:5672/\n[DEFAULT]\ndebug = true")],
    ));
    let err = validate(
        &keystone(json!({"notifications": {"secret": "rabbit", "key": "url"}})),
        &i,
    )
    .unwrap_err();
    assert!(
        err.contains("spec.notifications.key") && !err.contains("rabbit://"),
        "{err}"
    );
}

/// Keystone reads its configuration where the pods mount it (no copying, no root): every file of
/// `pod::CONFIG_FILES` is a key of the ConfigMap (mounted at `CONFIG_DIR`) or the Secret (at `SECRET_DIR`),
/// with and without the custom options, and the file paths the rendered options name are mounted too.
#[test]
fn every_file_keystone_reads_is_rendered_where_the_pods_mount_it() {
    use keystone_types::pod::{CONFIG_DIR, CONFIG_FILES, DOMAINS_DIR, SECRET_DIR};
    let all = json!({
        "customServiceConfig": "[DEFAULT]\ndebug = true\n",
        "customServiceConfigSecret": "ldap-secret",
        "defaultConfigOverwrite": {
            "policy.yaml": "\"identity:list_users\": \"role:admin\"\n",
            "logging.conf": "[loggers]\nkeys = root\n",
            "domains/keystone.ldap.conf": "[identity]\ndriver = ldap\n",
        },
    });
    let mut inputs = inputs();
    inputs.custom_secret = Some(secret("ldap-secret", &[("ldap.conf", "[ldap]\npassword = x\n")]));
    for spec in [json!({}), all] {
        let r = render(&keystone(spec), &inputs);
        for file in CONFIG_FILES {
            let (dir, name) = file.rsplit_once('/').unwrap();
            let held = match dir {
                d if d == CONFIG_DIR => r.config_map.contains_key(name),
                d if d == SECRET_DIR => r.secret.contains_key(name),
                other => panic!("{file}: {other} is not a mounted directory"),
            };
            assert!(held, "{file} is not rendered");
        }
        let conf = &r.config_map["keystone.conf"];
        for line in conf.lines() {
            let Some((option, path)) = line.split_once(" = /") else {
                continue;
            };
            let path = format!("/{path}");
            let name = path.rsplit_once('/').unwrap().1;
            let mounted = path == DOMAINS_DIR
                || path.starts_with("/etc/keystone/fernet-keys")
                || path.starts_with("/etc/keystone/credential-keys")
                || (path.starts_with(CONFIG_DIR) && r.config_map.contains_key(name));
            assert!(mounted, "{option} = {path}: not where the pods mount it");
        }
    }
}
