//! The client itself: configuration, the HTTP client (timeouts, CA bundle, no redirects), the token cache,
//! and the one place every request goes through (token, headers, one re-authentication on 401, logging).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::{self, Error, Redacted, Result};
use crate::token::{self, CachedToken, TokenResponse};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("keystone-operator/", env!("CARGO_PKG_VERSION"));

/// Header carrying the token on requests.
const X_AUTH_TOKEN: &str = "x-auth-token";
/// Header carrying the new token in the response to `POST /v3/auth/tokens`.
const X_SUBJECT_TOKEN: &str = "x-subject-token";

/// How to reach Keystone and whom to authenticate as.
#[derive(Clone)]
pub struct Config {
    /// Base URL of Keystone, for example `http://keystone-internal.openstack.svc:5000`. The client appends
    /// `/v3`; a URL that already ends in `/v3` is used as it is. A path prefix (`https://host/identity`) is kept.
    pub auth_url: String,
    /// The user to authenticate as: the bootstrap admin, which `keystone-manage bootstrap` gives the `admin`
    /// role on the system.
    pub username: String,
    pub password: String,
    /// Domain of the user, by name. Default `Default`.
    pub user_domain_name: String,
    /// PEM CA bundle to verify an `https` Keystone with. When set, only these CAs are trusted (not the
    /// built-in web roots), as with `cacert` in OpenStack's own clients.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Limit for each request, from connect to the last byte of the body. Default 30 s.
    pub timeout: Duration,
}

impl Config {
    /// A configuration with the defaults: domain `Default`, no CA bundle, 30 s timeout.
    pub fn new(
        auth_url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Config {
            auth_url: auth_url.into(),
            username: username.into(),
            password: password.into(),
            user_domain_name: "Default".to_owned(),
            ca_bundle_pem: None,
            timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &Redacted)
            .field("user_domain_name", &self.user_domain_name)
            .field(
                "ca_bundle_pem",
                &self
                    .ca_bundle_pem
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A Keystone v3 client authenticated as one user with system scope. Cloning is cheap: clones share the
/// HTTP connection pool and the token.
#[derive(Clone)]
pub struct KeystoneClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `.../v3`, without a trailing slash.
    base: Url,
    username: String,
    password: String,
    user_domain_name: String,
    /// The one token of this client. Held across authentication, so concurrent callers wait for one
    /// `POST /v3/auth/tokens` instead of each sending their own.
    token: Mutex<Option<CachedToken>>,
    issued: AtomicU64,
}

impl fmt::Debug for KeystoneClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneClient")
            .field("base", &self.inner.base.as_str())
            .field("username", &self.inner.username)
            .field("user_domain_name", &self.inner.user_domain_name)
            .field("password", &Redacted)
            .field("token_issued_count", &self.token_issued_count())
            .finish()
    }
}

/// A response, whatever its status, with Keystone's (redacted) error message when it is not a success.
pub(crate) struct Reply {
    method: Method,
    path: String,
    pub(crate) status: StatusCode,
    body: Vec<u8>,
    message: String,
}

impl Reply {
    /// The error this non-success response stands for.
    pub(crate) fn into_error(self) -> Error {
        error::from_status(
            self.method.as_str(),
            &self.path,
            self.status.as_u16(),
            self.message,
        )
    }

    /// `Ok` on any 2xx, otherwise the error.
    pub(crate) fn success(self) -> Result<()> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    /// The object under `key` of a 2xx JSON body (`{"service": {...}}`).
    pub(crate) fn object<T: DeserializeOwned>(self, key: &str) -> Result<T> {
        let mut body = self.json()?;
        let value = body
            .get_mut(key)
            .map(Value::take)
            .ok_or_else(|| self.decode(format!("no '{key}'")))?;
        serde_json::from_value(value).map_err(|e| self.decode(format!("'{key}': {e}")))
    }

    /// The list under `key` of a 2xx JSON body, refusing a list Keystone marked `"truncated": true`.
    pub(crate) fn list<T: DeserializeOwned>(self, key: &str) -> Result<Vec<T>> {
        let mut body = self.json()?;
        if body.get("truncated").and_then(Value::as_bool) == Some(true) {
            return Err(Error::Truncated {
                method: self.method.to_string(),
                path: self.path,
            });
        }
        let value = body
            .get_mut(key)
            .map(Value::take)
            .ok_or_else(|| self.decode(format!("no '{key}'")))?;
        serde_json::from_value(value).map_err(|e| self.decode(format!("'{key}': {e}")))
    }

    fn json(&self) -> Result<Value> {
        if !self.status.is_success() {
            return Err(error::from_status(
                self.method.as_str(),
                &self.path,
                self.status.as_u16(),
                self.message.clone(),
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| self.decode(format!("body is not JSON: {e}")))
    }

    fn decode(&self, reason: String) -> Error {
        Error::Decode {
            method: self.method.to_string(),
            path: self.path.clone(),
            reason,
        }
    }
}

impl KeystoneClient {
    /// Checks the configuration and builds the HTTP client; does not contact Keystone (the first call
    /// authenticates).
    pub fn new(config: Config) -> Result<Self> {
        let base = base_url(&config.auth_url)?;
        if config.username.is_empty() || config.password.is_empty() {
            return Err(Error::Config(
                "username and password must not be empty".to_owned(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(Error::Config("timeout must be greater than zero".to_owned()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(config.timeout)
            // Keystone does not redirect API calls; following one would send X-Auth-Token (which reqwest
            // does not know to strip, unlike Authorization) to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the URL given: a proxy from the environment would see the admin password.
            .no_proxy();
        if let Some(pem) = &config.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::CaBundle(error::chain(&e.without_url())))?;
            if certs.is_empty() {
                return Err(Error::CaBundle(
                    "no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_owned(),
                ));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        // With a CA bundle, the certificates are only parsed here.
        let http = builder.build().map_err(|e| {
            let detail = error::chain(&e.without_url());
            if config.ca_bundle_pem.is_some() {
                Error::CaBundle(detail)
            } else {
                Error::Config(detail)
            }
        })?;
        Ok(KeystoneClient {
            inner: Arc::new(Inner {
                http,
                base,
                username: config.username,
                password: config.password,
                user_domain_name: config.user_domain_name,
                token: Mutex::new(None),
                issued: AtomicU64::new(0),
            }),
        })
    }

    /// How many tokens this client (and its clones) obtained from Keystone: proof of caching for tests, and
    /// a counter for metrics.
    pub fn token_issued_count(&self) -> u64 {
        self.inner.issued.load(Ordering::Relaxed)
    }

    /// The `.../v3` URL every path is relative to.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// Sends one API request with the cached token. On a 401 the token is dropped and the request is sent
    /// once more with a fresh one; a second 401 is returned as it is (no loop). `secret` is a value in
    /// `body` (a user's password) to keep out of any error message.
    pub(crate) async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        secret: Option<&str>,
    ) -> Result<Reply> {
        let url = self.url(segments, query)?;
        let (first, generation) = self.attempt(&method, &url, body, secret).await?;
        if first.status != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        // Only the token that was rejected: another task may already hold a newer one.
        self.drop_token(generation).await;
        tracing::debug!(method = %method, path = %first.path, "token rejected; re-authenticating once");
        let (second, generation) = self.attempt(&method, &url, body, secret).await?;
        if second.status == StatusCode::UNAUTHORIZED {
            self.drop_token(generation).await;
        }
        Ok(second)
    }

    /// One try of [`call`](Self::call): the reply and which token it was sent with.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        secret: Option<&str>,
    ) -> Result<(Reply, u64)> {
        let (token, generation) = self.token().await?;
        let secrets = [
            self.inner.password.as_str(),
            token.to_str().unwrap_or(""),
            secret.unwrap_or(""),
        ];
        let reply = self
            .send(method, url.clone(), Some(token.clone()), body, &secrets)
            .await?;
        Ok((reply, generation))
    }

    /// The cached token, or a new one when there is none or it is within its refresh margin.
    async fn token(&self) -> Result<(HeaderValue, u64)> {
        let mut cached = self.inner.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok((t.value.clone(), t.generation));
        }
        *cached = None;
        let fresh = self.authenticate().await?;
        let out = (fresh.value.clone(), fresh.generation);
        *cached = Some(fresh);
        Ok(out)
    }

    async fn drop_token(&self, generation: u64) {
        let mut cached = self.inner.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.generation == generation) {
            *cached = None;
        }
    }

    /// `POST /v3/auth/tokens` with the password method and system scope.
    async fn authenticate(&self) -> Result<CachedToken> {
        let inner = &self.inner;
        let url = self.url(&["auth", "tokens"], &[])?;
        let body = token::auth_request(&inner.username, &inner.password, &inner.user_domain_name);
        let started = Instant::now();
        let secrets = [inner.password.as_str()];
        let (reply, headers) = self
            .send_raw(&Method::POST, url, None, Some(&body), &secrets)
            .await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(Error::AuthFailed {
                username: inner.username.clone(),
                domain: inner.user_domain_name.clone(),
                message: reply.message,
            });
        }
        if !reply.status.is_success() {
            return Err(reply.into_error());
        }
        let mut value = headers
            .get(X_SUBJECT_TOKEN)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| reply.decode("no X-Subject-Token header".to_owned()))?;
        value.set_sensitive(true);
        let parsed: TokenResponse =
            serde_json::from_slice(&reply.body).map_err(|e| reply.decode(format!("token body: {e}")))?;
        if parsed.token.system.is_none() {
            return Err(reply.decode("the token is not system-scoped".to_owned()));
        }
        let reuse = token::reuse_for(&parsed.token, SystemTime::now())
            .ok_or_else(|| reply.decode("unreadable expires_at/issued_at".to_owned()))?;
        let generation = inner.issued.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            user = %inner.username,
            expires_at = %parsed.token.expires_at,
            reuse_secs = reuse.as_secs(),
            "keystone token issued"
        );
        Ok(CachedToken {
            value,
            refresh_at: started + reuse,
            generation,
        })
    }

    pub(crate) async fn send(
        &self,
        method: &Method,
        url: Url,
        token: Option<HeaderValue>,
        body: Option<&Value>,
        secrets: &[&str],
    ) -> Result<Reply> {
        Ok(self.send_raw(method, url, token, body, secrets).await?.0)
    }

    /// One HTTP exchange: headers, timing, a debug line (method, path, status, elapsed; never a header or a
    /// body), transport errors mapped.
    async fn send_raw(
        &self,
        method: &Method,
        url: Url,
        token: Option<HeaderValue>,
        body: Option<&Value>,
        secrets: &[&str],
    ) -> Result<(Reply, HeaderMap)> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut request = self.inner.http.request(method.clone(), url);
        if let Some(token) = token {
            request = request.header(X_AUTH_TOKEN, token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let transport = |e: reqwest::Error| {
            let timeout = e.is_timeout();
            let detail = error::redact(&error::chain(&e.without_url()), secrets);
            tracing::debug!(method = %method, path = %path, error = %detail, "keystone request failed");
            let (method, path) = (method.to_string(), path.clone());
            if timeout {
                Error::Timeout { method, path, detail }
            } else {
                Error::Transport { method, path, detail }
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, MAX_BODY).await.map_err(|e| match e {
            Capped::Read(e) => transport(e),
            Capped::TooLarge => Error::Decode {
                method: method.to_string(),
                path: path.clone(),
                reason: format!("response body larger than {MAX_BODY} bytes; refused"),
            },
        })?;
        tracing::debug!(
            method = %method,
            path = %path,
            status = status.as_u16(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "keystone request"
        );
        let message = if status.is_success() {
            String::new()
        } else {
            error::error_message(&body, secrets)
        };
        Ok((
            Reply {
                method: method.clone(),
                path,
                status,
                body,
                message,
            },
            headers,
        ))
    }

    /// The URL of `segments` (each percent-encoded as one path segment) under `/v3`, with `query`.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("auth_url {} cannot take a path", self.inner.base)))?
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }
}

/// The largest response body the client reads: far above any Keystone answer it asks for (a filtered list, a
/// token), far below what could exhaust the controller's memory.
pub const MAX_BODY: usize = 8 << 20;

enum Capped {
    Read(reqwest::Error),
    TooLarge,
}

/// The body of `response`, refused once it passes `max` bytes (by its Content-Length, or while reading).
async fn read_capped(mut response: reqwest::Response, max: usize) -> std::result::Result<Vec<u8>, Capped> {
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > max))
    {
        return Err(Capped::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Capped::Read)? {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `auth_url` with `/v3` appended (unless it ends in `/v3` already), no query, no fragment.
fn base_url(auth_url: &str) -> Result<Url> {
    let mut url = Url::parse(auth_url.trim())
        .map_err(|e| Error::Config(format!("auth_url {auth_url:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "auth_url {auth_url:?}: scheme must be http or https"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config("auth_url must not carry credentials".to_owned()));
    }
    url.set_query(None);
    url.set_fragment(None);
    let ends_in_v3 = url.path_segments().and_then(|mut s| s.rfind(|s| !s.is_empty())) == Some("v3");
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| Error::Config(format!("auth_url {auth_url:?} cannot take a path")))?;
        segments.pop_if_empty();
        if !ends_in_v3 {
            segments.push("v3");
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn base_url_appends_v3_once() {
        let cases = [
            (
                "http://keystone-internal.ns.svc:5000",
                "http://keystone-internal.ns.svc:5000/v3",
            ),
            (
                "http://keystone-internal.ns.svc:5000/",
                "http://keystone-internal.ns.svc:5000/v3",
            ),
            ("https://k:5000/v3", "https://k:5000/v3"),
            ("https://k:5000/v3/", "https://k:5000/v3"),
            ("https://cloud/identity", "https://cloud/identity/v3"),
            ("https://cloud/identity/?x=1#f", "https://cloud/identity/v3"),
        ];
        for (input, want) in cases {
            assert_eq!(base_url(input).unwrap().as_str(), want, "{input}");
        }
        for bad in ["keystone:5000", "ftp://k/", "not a url", "http://u:p@k:5000"] {
            let err = base_url(bad).unwrap_err();
            assert_eq!(err.category(), "Config", "{bad}");
        }
        assert!(
            !base_url("http://u:hunter2@k:5000")
                .unwrap_err()
                .to_string()
                .contains("hunter2")
        );
    }
}
