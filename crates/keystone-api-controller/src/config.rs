//! Rendering, pure: the validated view → the files of the configuration. Templates are handlebars, embedded in
//! the binary, registered once in strict mode with HTML escaping off, so output is a deterministic function of
//! the view. Non-secret files go to the ConfigMap, files holding a password to the Secret.

use std::collections::BTreeMap;

use handlebars::Handlebars;
use operator_common::hmac::Key;
use serde_json::json;

use crate::validate::Validated;

/// WSGI processes per pod (one thread each): bcrypt makes password logins CPU-bound, so this tracks cores.
pub const WSGI_PROCESSES: u32 = 2;

use keystone_types::pod;

/// The rendered configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// ConfigMap data.
    pub config_map: BTreeMap<String, String>,
    /// Secret data (formats as redacted in Debug).
    pub secret: BTreeMap<String, String>,
    /// HMAC over both under the instance's key, hex (first 16 digits): the Secret holds the database password,
    /// so a plain hash would let anyone who reads status or the objects' names test password guesses.
    pub hash: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("config_map", &self.config_map.keys().collect::<Vec<_>>())
            .field("secret", &self.secret.keys().collect::<Vec<_>>())
            .field("hash", &self.hash)
            .finish()
    }
}

/// The template registry.
#[derive(Debug)]
pub struct Templates(Handlebars<'static>);

impl Templates {
    /// Registers the embedded templates (strict mode, no escaping).
    pub fn new() -> Result<Self, Box<handlebars::TemplateError>> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_template_string("keystone.conf", include_str!("../templates/keystone.conf.hbs"))?;
        hb.register_template_string("secrets.conf", include_str!("../templates/secrets.conf.hbs"))?;
        hb.register_template_string("httpd.conf", include_str!("../templates/httpd.conf.hbs"))?;
        Ok(Self(hb))
    }

    /// Renders every file for `v`; the hash is an HMAC under `key`.
    pub fn render(&self, v: &Validated, key: &Key) -> Result<Rendered, handlebars::RenderError> {
        let domain_config = v.overwrite.keys().any(|k| k.starts_with(pod::DOMAINS_PREFIX));
        let ctx = json!({
            "name": v.name,
            "namespace": v.namespace,
            "memcache_servers": v.memcache_servers,
            "token_expiration": v.token_expiration,
            "allow_expired_window": v.allow_expired_window,
            "max_active_keys": v.max_active_keys,
            "secure_rbac": v.secure_rbac,
            "config_dir": pod::CONFIG_DIR,
            "domains_dir": pod::DOMAINS_DIR,
            "policy_file": v.overwrite.contains_key("policy.yaml"),
            "logging_conf": v.overwrite.contains_key("logging.conf"),
            "domain_config": domain_config,
            "notifications": v.transport_url.is_some(),
            "processes": WSGI_PROCESSES,
        });
        let secret_ctx = json!({
            "name": v.name,
            "namespace": v.namespace,
            "database_connection": v.database_connection,
            "transport_url": v.transport_url.as_ref().map(|t| t.expose().clone()),
        });

        // Keystone reads these where they are mounted (keystone_types::pod::CONFIG_FILES); the two custom files
        // are always present, empty when unset, so the list of files is fixed.
        let mut cm = BTreeMap::new();
        cm.insert("keystone.conf".to_owned(), self.0.render("keystone.conf", &ctx)?);
        cm.insert("httpd.conf".to_owned(), self.0.render("httpd.conf", &ctx)?);
        cm.insert(
            "10-custom.conf".to_owned(),
            v.custom_config.clone().unwrap_or_default(),
        );
        let mut secret = BTreeMap::new();
        secret.insert(
            "00-secrets.conf".to_owned(),
            self.0.render("secrets.conf", &secret_ctx)?,
        );
        secret.insert("my.cnf".to_owned(), v.database_client_cnf.expose().clone());
        secret.insert(
            "20-custom-secret.conf".to_owned(),
            v.custom_secret_config
                .as_ref()
                .map(|c| c.expose().clone())
                .unwrap_or_default(),
        );
        for (file, content) in &v.overwrite {
            cm.insert(pod::overwrite_key(file), content.clone());
        }

        let parts = [("cm", &cm), ("secret", &secret)]
            .into_iter()
            .flat_map(|(tag, map)| {
                map.iter()
                    .flat_map(move |(k, c)| [tag.as_bytes(), k.as_bytes(), c.as_bytes()])
            });
        let mut hash = key.hex_parts(parts);
        hash.truncate(16);
        Ok(Rendered {
            config_map: cm,
            secret,
            hash,
        })
    }
}
