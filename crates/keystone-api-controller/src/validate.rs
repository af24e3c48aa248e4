//! Pure: a KeystoneAPI and what `read.rs` fetched → the validated view the builders work from, or a message
//! for a False `ConfigReady` naming the field or Secret to fix.

use std::collections::BTreeMap;

use kube::ResourceExt;

use keystone_types::KeystoneAPI;
use keystone_types::duration::parse;
use operator_common::Redacted;

use crate::read::Inputs;

/// Options the operator renders from the spec; setting them in custom config is refused.
const OWNED: &[(&str, Option<&str>, &str)] = &[
    (
        "database",
        Some("connection"),
        "spec.database and the password Secret",
    ),
    ("token", Some("expiration"), "spec.token.expiration"),
    (
        "token",
        Some("allow_expired_window"),
        "spec.token.allowExpiredWindow",
    ),
    (
        "token",
        Some("provider"),
        "nothing: this operator runs fernet tokens",
    ),
    ("fernet_tokens", None, "spec.fernet"),
    ("fernet_receipts", None, "spec.fernet"),
    (
        "credential",
        Some("key_repository"),
        "nothing: the operator mounts the credential keys",
    ),
    ("oslo_policy", Some("enforce_scope"), "spec.enableSecureRBAC"),
    (
        "oslo_policy",
        Some("enforce_new_defaults"),
        "spec.enableSecureRBAC",
    ),
];

/// The validated view of one KeystoneAPI.
#[derive(Debug, Clone)]
pub struct Validated {
    /// KeystoneAPI name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Container image.
    pub image: String,
    /// Replicas.
    pub replicas: i32,
    /// `mysql+pymysql://…` with the password URL-encoded.
    pub database_connection: Redacted<String>,
    /// oslo.cache `memcache_servers` value (empty: caching off).
    pub memcache_servers: String,
    /// `[token] expiration`, seconds.
    pub token_expiration: u64,
    /// `[token] allow_expired_window`, seconds.
    pub allow_expired_window: u64,
    /// `fernet.maxActiveKeys`.
    pub max_active_keys: i32,
    /// `enableSecureRBAC`.
    pub secure_rbac: bool,
    /// customServiceConfig.
    pub custom_config: Option<String>,
    /// customServiceConfigSecret values, concatenated in key order.
    pub custom_secret_config: Option<Redacted<String>>,
    /// defaultConfigOverwrite.
    pub overwrite: BTreeMap<String, String>,
    /// Notification transport URL, `$` escaped for oslo.config.
    pub transport_url: Option<Redacted<String>>,
    /// Multus networks.
    pub network_attachments: Vec<String>,
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for the password in the SQLAlchemy URL).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes `$` so oslo.config does not interpolate it.
pub fn escape_dollar(s: &str) -> String {
    s.replace('$', "$$")
}

/// memcache_pool's server syntax: IPv6 literals as `inet6:[addr]:port`.
pub fn memcache_server(server: &str) -> String {
    match server.rsplit_once(':') {
        Some((host, port)) if host.contains(':') => {
            format!(
                "inet6:[{}]:{port}",
                host.trim_start_matches('[').trim_end_matches(']')
            )
        }
        _ => server.to_owned(),
    }
}

/// Returns `[section] option` pairs of `ini` that the operator owns, with the field to use instead.
pub fn owned_options(ini: &str) -> Vec<String> {
    let mut section = String::new();
    let mut found = Vec::new();
    for line in ini.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        for (sec, opt, instead) in OWNED {
            if *sec == section && opt.is_none_or(|o| o == key) {
                found.push(format!("[{section}] {key} (set it through {instead})"));
            }
        }
    }
    found
}

/// Validates the KeystoneAPI with its inputs.
pub fn validate(ks: &KeystoneAPI, inputs: &Inputs) -> Result<Validated, String> {
    let spec = &ks.spec;
    let password_secret = inputs
        .password_secret
        .as_ref()
        .ok_or_else(|| format!("Secret {} (spec.secret) not found", spec.secret))?;
    let key = &spec.password_selectors.database;
    let password = password_secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8(v.0.clone()))
        .ok_or_else(|| {
            format!(
                "Secret {} has no key {key} (spec.passwordSelectors.database)",
                spec.secret
            )
        })?
        .map_err(|_| format!("key {key} of Secret {} is not UTF-8", spec.secret))?;
    if password.is_empty() {
        return Err(format!(
            "key {key} of Secret {} (spec.passwordSelectors.database) is empty",
            spec.secret
        ));
    }
    let db = &spec.database;
    let host = if db.host.contains(':') {
        format!("[{}]", db.host)
    } else {
        db.host.clone()
    };
    let connection = format!(
        "mysql+pymysql://{}:{}@{host}:{}/{}?charset=utf8",
        db.user,
        url_encode(&password),
        db.port,
        db.name
    );

    let seconds = |field: &str, v: &str| {
        parse(v)
            .map(|d| d.as_secs())
            .map_err(|e| format!("spec.{field}: {e}"))
    };
    let custom_secret_config = match (&spec.custom_service_config_secret, &inputs.custom_secret) {
        (None, _) => None,
        (Some(n), None) => return Err(format!("Secret {n} (spec.customServiceConfigSecret) not found")),
        (Some(n), Some(s)) => {
            let mut all = String::new();
            for (k, v) in s.data.iter().flatten() {
                let text = String::from_utf8(v.0.clone())
                    .map_err(|_| format!("key {k} of Secret {n} is not UTF-8"))?;
                all.push_str(&text);
                if !all.ends_with('\n') {
                    all.push('\n');
                }
            }
            Some(Redacted::new(all))
        }
    };
    let mut refused = Vec::new();
    if let Some(c) = &spec.custom_service_config {
        refused.extend(
            owned_options(c)
                .into_iter()
                .map(|o| format!("spec.customServiceConfig sets {o}")),
        );
    }
    if let Some(c) = &custom_secret_config {
        refused.extend(
            owned_options(c.expose())
                .into_iter()
                .map(|o| format!("spec.customServiceConfigSecret sets {o}")),
        );
    }
    if !refused.is_empty() {
        return Err(format!("options owned by the operator: {}", refused.join("; ")));
    }
    let transport_url = match (&spec.notifications, &inputs.notifications_secret) {
        (None, _) => None,
        (Some(n), None) => {
            return Err(format!(
                "Secret {} (spec.notifications.secret) not found",
                n.secret
            ));
        }
        (Some(n), Some(s)) => {
            let url = s
                .data
                .as_ref()
                .and_then(|d| d.get(&n.key))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .ok_or_else(|| {
                    format!(
                        "Secret {} has no UTF-8 key {} (spec.notifications.key)",
                        n.secret, n.key
                    )
                })?;
            Some(Redacted::new(escape_dollar(url.trim())))
        }
    };

    Ok(Validated {
        name: ks.name_any(),
        namespace: ks.namespace().unwrap_or_default(),
        image: spec.container_image.clone(),
        replicas: spec.replicas,
        database_connection: Redacted::new(connection),
        memcache_servers: spec
            .memcached_servers
            .iter()
            .map(|s| memcache_server(s))
            .collect::<Vec<_>>()
            .join(","),
        token_expiration: seconds("token.expiration", &spec.token.expiration)?,
        allow_expired_window: seconds("token.allowExpiredWindow", &spec.token.allow_expired_window)?,
        max_active_keys: spec.fernet.max_active_keys,
        secure_rbac: spec.enable_secure_rbac,
        custom_config: spec
            .custom_service_config
            .clone()
            .filter(|c| !c.trim().is_empty()),
        custom_secret_config,
        overwrite: spec.default_config_overwrite.clone(),
        transport_url,
        network_attachments: spec.network_attachments.clone(),
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("s3cret", "s3cret")]
    #[case("a$b%c d'e\"f`g{{h}}&i\nj", "a%24b%25c%20d%27e%22f%60g%7B%7Bh%7D%7D%26i%0Aj")]
    #[case("pässwörd", "p%C3%A4ssw%C3%B6rd")]
    fn passwords_are_url_encoded(#[case] raw: &str, #[case] encoded: &str) {
        assert_eq!(url_encode(raw), encoded);
        assert!(!url_encode(raw).contains('$'), "oslo.config would interpolate $");
    }

    #[rstest]
    #[case("memcached-0.memcached:11211", "memcached-0.memcached:11211")]
    #[case("10.0.0.1:11211", "10.0.0.1:11211")]
    #[case("[fd00::1]:11211", "inet6:[fd00::1]:11211")]
    #[case("fd00::1:11211", "inet6:[fd00::1]:11211")]
    fn memcache_servers(#[case] input: &str, #[case] want: &str) {
        assert_eq!(memcache_server(input), want);
    }

    #[test]
    fn operator_owned_options_are_found() {
        let ini = "[DEFAULT]\ndebug = true\n[token]\nexpiration=7200\ncaching = false\n[fernet_tokens]\nmax_active_keys = 9\n\
                   [database]\n# connection = commented\nconnection = sqlite://\n[Credential]\nkey_repository=/x\n";
        let found = owned_options(ini);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].contains("[token] expiration") && found[0].contains("spec.token.expiration"));
        assert!(
            found
                .iter()
                .any(|f| f.contains("[fernet_tokens] max_active_keys"))
        );
        assert!(found.iter().any(|f| f.contains("[database] connection")));
        assert!(found.iter().any(|f| f.contains("[credential] key_repository")));
        assert!(owned_options("[token]\ncaching = true\n").is_empty());
    }
}
