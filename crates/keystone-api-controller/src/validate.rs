//! Pure: a KeystoneAPI and what `read.rs` fetched → the validated view the builders work from, or a message
//! for a False `ConfigReady` naming the field or Secret to fix.

use std::collections::BTreeMap;

use kube::ResourceExt;

use keystone_types::KeystoneAPI;
use keystone_types::duration::parse;
use operator_common::Redacted;

use crate::read::Inputs;

/// Options the operator renders from the spec; setting them in custom config is refused: `(group as oslo.config
/// normalizes it, option or the whole group, what to use instead)`. Deprecated names oslo.config still reads
/// count too (oslo.db's `[DEFAULT] sql_connection`, `[database] sql_connection`, `[sql] connection` all set
/// `[database] connection`); the test against oslo.config itself keeps this list complete.
const OWNED: &[(&str, Option<&str>, &str)] = &[
    (
        "database",
        Some("connection"),
        "spec.database and the password Secret",
    ),
    (
        "DEFAULT",
        Some("sql_connection"),
        "spec.database and the password Secret",
    ),
    (
        "database",
        Some("sql_connection"),
        "spec.database and the password Secret",
    ),
    ("sql", Some("connection"), "spec.database and the password Secret"),
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
    /// `mysql+pymysql://user@host:port/db?…&read_default_file=…`: no password in the URL (see
    /// [`client_option_file`]).
    pub database_connection: String,
    /// The MySQL client option file holding the database password (`my.cnf`).
    pub database_client_cnf: Redacted<String>,
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

/// The client option file in the pod: in the mounted config Secret (mode 0440, group 42425).
pub const CLIENT_CNF: &str = "/var/lib/config-data/secret/my.cnf";

/// The MySQL client option file PyMySQL reads through `read_default_file`: the database password in its
/// `[client]` section, double-quoted (PyMySQL strips one pair of matching quotes, so leading or trailing
/// spaces and quotes inside survive; the file is read without interpolation, so `%` and `$` are literal).
///
/// Why not the password in the URL: it would have to be percent-encoded, and Keystone's `db_sync` hands the
/// connection URL to Python's configparser (alembic), which rejects any `%` ("invalid interpolation
/// syntax") — in every Keystone release up to at least 2025.1 — so any password needing an escape breaks
/// db_sync. Measured with Debian's Keystone on the local node.
pub fn client_option_file(password: &str) -> String {
    format!(
        "# Rendered by keystone-api-controller: the database password for PyMySQL (read_default_file).\n\
         [client]\npassword = \"{password}\"\n"
    )
}

/// Escapes `$` so oslo.config does not interpolate it.
pub fn escape_dollar(s: &str) -> String {
    s.replace('$', "$$")
}

/// A host name (DNS labels of letters, digits and `-`, an optional final dot) or a bare IP address: what
/// admission accepts for `database.host`.
pub fn is_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A memcached server as admission accepts it: `host:port`, `[ipv6]:port`, `inet6:[ipv6]:port` or
/// `ipv6:port`, port 1-65535.
pub fn is_memcached_server(server: &str) -> bool {
    let Some((host, port)) = server.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.starts_with('0') && port.parse::<u16>().is_ok_and(|p| p > 0);
    let host = host.strip_prefix("inet6:").unwrap_or(host);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !server.starts_with("inet6:") && is_host(host),
    };
    port_ok && host_ok
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

/// Python's `str.isspace()`, which oslo.config strips with: Unicode whitespace and the separators U+001C-U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// oslo.config's group name normalization: `DEFAULT` as written, every other group lower-cased.
fn normalize_group(name: &str) -> String {
    if name == "DEFAULT" {
        name.to_owned()
    } else {
        name.to_lowercase()
    }
}

/// Every `(group, option)` that `ini` sets, read exactly as oslo.config's INI parser reads a config file:
/// lines split at `\n`, `\r\n` and `\r` (Python's universal newlines); a line starting with a space or tab
/// continues the previous value (so an indented `[section]` is not a section); `#` and `;` comment only in
/// the first column; the key ends at the first `=` or `:`; group names normalized as oslo.config does; option
/// names case-sensitive. Text oslo.config cannot parse (Keystone would not start) is an error naming the line.
pub fn oslo_assignments(ini: &str) -> Result<Vec<(String, String)>, String> {
    let text = ini.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    let mut group: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    let flush = |pending: &mut Option<(usize, String)>,
                 group: &Option<String>,
                 out: &mut Vec<(String, String)>|
     -> Result<(), String> {
        if let Some((lineno, key)) = pending.take() {
            let Some(g) = group else {
                return Err(format!(
                    "line {lineno}: option {key:?} is set before any [section]"
                ));
            };
            out.push((g.clone(), key));
        }
        Ok(())
    };
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let line = raw.trim_end_matches(py_space);
        if line.is_empty() {
            flush(&mut pending, &group, &mut out)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if pending.is_none() {
                return Err(format!(
                    "line {lineno}: a line starting with a space or tab continues the previous option's value, \
                     and there is none"
                ));
            }
            continue;
        }
        flush(&mut pending, &group, &mut out)?;
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err(format!("line {lineno}: a section header must end with ]"));
            }
            if line.chars().count() <= 2 {
                return Err(format!("line {lineno}: empty section name"));
            }
            group = Some(normalize_group(&line[1..line.len() - 1]));
        } else if line.starts_with(['#', ';']) {
            continue;
        } else {
            let split = match (line.find(':'), line.find('=')) {
                (None, None) => {
                    return Err(format!("line {lineno}: no '=' or ':' in {:?}", line));
                }
                (Some(c), Some(e)) => c.min(e),
                (Some(i), None) | (None, Some(i)) => i,
            };
            let key = line[..split].trim_matches(py_space);
            if key.is_empty() {
                return Err(format!("line {lineno}: empty option name"));
            }
            pending = Some((lineno, key.to_owned()));
        }
    }
    flush(&mut pending, &group, &mut out)?;
    Ok(out)
}

/// The operator-owned options `ini` sets (`[group] option (set it through …)`), or why oslo.config could not
/// read it.
pub fn owned_options(ini: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for (group, key) in oslo_assignments(ini)? {
        if let Some((_, _, instead)) = OWNED
            .iter()
            .find(|(g, o, _)| *g == group && o.is_none_or(|o| o == key))
        {
            found.push(format!("[{group}] {key} (set it through {instead})"));
        }
    }
    Ok(found)
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
    if password.chars().any(char::is_control) {
        return Err(format!(
            "key {key} of Secret {} (spec.passwordSelectors.database) contains a line break or another control \
             character, which the MySQL client option file Keystone reads cannot hold; choose a password without one",
            spec.secret
        ));
    }
    let db = &spec.database;
    // Admission checks these for new objects; an object stored before those rules must not reach the files.
    if !is_host(&db.host) {
        return Err(format!(
            "spec.database.host {:?} is not a host name or an IP address",
            db.host
        ));
    }
    if let Some(bad) = spec.memcached_servers.iter().find(|m| !is_memcached_server(m)) {
        return Err(format!(
            "spec.memcachedServers entry {bad:?} is not host:port with a host name or IP address"
        ));
    }
    if !(3..=100).contains(&spec.fernet.max_active_keys) {
        return Err(format!(
            "spec.fernet.maxActiveKeys must be from 3 to 100, not {}",
            spec.fernet.max_active_keys
        ));
    }
    let host = if db.host.contains(':') {
        format!("[{}]", db.host)
    } else {
        db.host.clone()
    };
    let connection = escape_dollar(&format!(
        "mysql+pymysql://{}@{host}:{}/{}?charset=utf8&read_default_file={CLIENT_CNF}",
        db.user, db.port, db.name
    ));

    // Keystone takes whole seconds: 500ms would be 0, a token that expires when issued.
    let seconds = |field: &str, v: &str| {
        let d = parse(v).map_err(|e| format!("spec.{field}: {e}"))?;
        if d.subsec_nanos() != 0 || d.as_secs() == 0 {
            return Err(format!(
                "spec.{field} must be a whole number of seconds, at least 1s, not {v:?}"
            ));
        }
        Ok(d.as_secs())
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
                .map_err(|e| format!("spec.customServiceConfig is not valid oslo.config INI: {e}"))?
                .into_iter()
                .map(|o| format!("spec.customServiceConfig sets {o}")),
        );
    }
    if let Some(c) = &custom_secret_config {
        // The message names lines, never content: this is a Secret.
        let owned = owned_options(c.expose()).map_err(|e| {
            format!(
                "spec.customServiceConfigSecret is not valid oslo.config INI ({})",
                e.split(':').next().unwrap_or_default()
            )
        })?;
        refused.extend(
            owned
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
            let url = url.trim();
            if url.chars().any(char::is_control) {
                return Err(format!(
                    "key {} of Secret {} (spec.notifications.key) contains a line break or another control \
                     character inside the transport URL; it would change the configuration file it is written to",
                    n.key, n.secret
                ));
            }
            Some(Redacted::new(escape_dollar(url)))
        }
    };

    Ok(Validated {
        name: ks.name_any(),
        namespace: ks.namespace().unwrap_or_default(),
        image: spec.container_image.clone(),
        replicas: spec.replicas,
        database_connection: connection,
        database_client_cnf: Redacted::new(client_option_file(&password)),
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

    /// What PyMySQL does with the option file: Python's RawConfigParser, then one pair of quotes removed.
    fn pymysql_reads(cnf: &str) -> String {
        let line = cnf.lines().find_map(|l| l.strip_prefix("password = ")).unwrap();
        let v = line.trim();
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap()
            .to_owned()
    }

    #[rstest]
    #[case("s3cret")]
    #[case("a$b%c d'e\"f`g{{h}}&i@j:k/l?m#n;o")]
    #[case(" leading and trailing ")]
    #[case("\"quoted\"")]
    #[case("pässwörd")]
    fn passwords_survive_the_option_file(#[case] raw: &str) {
        let cnf = client_option_file(raw);
        assert_eq!(pymysql_reads(&cnf), raw);
        assert_eq!(cnf.lines().count(), 3, "one line per entry: {cnf}");
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
    fn hosts_and_memcached_servers_as_admission_takes_them() {
        for ok in [
            "openstack",
            "db.example.com",
            "db.example.com.",
            "DB-1.x",
            "10.0.0.1",
            "fd00::1",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in [
            "",
            "db\nx",
            "db\r",
            "a b",
            "user@db",
            "db/x",
            "[fd00::1]",
            "-db",
            "db-",
            "a..b",
            "db$x",
        ] {
            assert!(!is_host(bad), "{bad:?}");
        }
        for ok in [
            "m:11211",
            "10.0.0.1:11211",
            "[fd00::1]:11211",
            "fd00::1:11211",
            "inet6:[fd00::2]:1",
            "m:65535",
        ] {
            assert!(is_memcached_server(ok), "{ok}");
        }
        for bad in [
            "m",
            "m:0",
            "m:65536",
            "m:011211",
            "m:11211\r",
            "m1:1,m2:2",
            "[x]:1",
            "inet6:m:1",
            "m$x:1",
        ] {
            assert!(!is_memcached_server(bad), "{bad:?}");
        }
    }

    #[test]
    fn operator_owned_options_are_found() {
        let ini = "[DEFAULT]\ndebug = true\n[token]\nexpiration=7200\ncaching = false\n[fernet_tokens]\nmax_active_keys = 9\n\
                   [database]\n# connection = commented\nconnection = sqlite://\n[Credential]\nkey_repository=/x\n";
        let found = owned_options(ini).unwrap_or_default();
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].contains("[token] expiration") && found[0].contains("spec.token.expiration"));
        assert!(
            found
                .iter()
                .any(|f| f.contains("[fernet_tokens] max_active_keys"))
        );
        assert!(found.iter().any(|f| f.contains("[database] connection")));
        assert!(found.iter().any(|f| f.contains("[credential] key_repository")));
        assert_eq!(owned_options("[token]\ncaching = true\n"), Ok(vec![]));
    }
}
