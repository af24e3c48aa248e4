//! Typed errors of the Keystone client, each with a short, stable [`Error::category`].
//!
//! Messages carry the HTTP method, the path (never the query string's values beyond names and IDs, never a
//! header) and Keystone's own error message. Every message that came from the wire has been passed through
//! [`redact`] with the secrets the client knows (the admin password, the current token, a password sent in
//! the request), so a server that echoes a value back cannot leak it into logs, Events or status.

use std::fmt;

/// Result of a Keystone client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What failed, with enough context to act on and no secret in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The [`Config`](crate::Config) cannot work: a malformed URL, an unsupported scheme.
    #[error("invalid Keystone client configuration: {0}")]
    Config(String),

    /// The CA bundle holds no certificate, or one that cannot be parsed.
    #[error("invalid CA bundle: {0}")]
    CaBundle(String),

    /// Authentication itself was refused (401 on `POST /v3/auth/tokens`). With system scope this is also what
    /// Keystone answers when the password is right but the user has no role assignment on the system: it does
    /// not tell the two apart unless `insecure_debug` is on.
    #[error(
        "Keystone refused system-scoped authentication of user '{username}' in domain '{domain}' (401): \
         {message} (check the password, and that the user has a role on the system: \
         keystone-manage bootstrap grants 'admin' on the system to the bootstrap user)"
    )]
    AuthFailed {
        username: String,
        domain: String,
        message: String,
    },

    /// 401 on an API call, after the client has dropped its token, re-authenticated once and retried once.
    #[error("{method} {path}: unauthorized (401): {message}")]
    Unauthorized {
        method: String,
        path: String,
        message: String,
    },

    /// 403: the token is valid but the policy does not allow the call (for example a token without system
    /// scope, or a user whose system role is only `reader`).
    #[error("{method} {path}: forbidden (403): {message}")]
    Forbidden {
        method: String,
        path: String,
        message: String,
    },

    /// 404 where the object was required to exist.
    #[error("{method} {path}: not found (404): {message}")]
    NotFound {
        method: String,
        path: String,
        message: String,
    },

    /// 409 that the call could not resolve (for example a name taken by an object the client cannot find).
    #[error("{method} {path}: conflict (409): {message}")]
    Conflict {
        method: String,
        path: String,
        message: String,
    },

    /// Any other non-success status.
    #[error("{method} {path}: Keystone answered {status}: {message}")]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
    },

    /// The request did not complete within the configured timeout.
    #[error("{method} {path}: timed out: {detail}")]
    Timeout {
        method: String,
        path: String,
        detail: String,
    },

    /// The request could not be sent or its response not read (DNS, connect, TLS, reset).
    #[error("{method} {path}: request failed: {detail}")]
    Transport {
        method: String,
        path: String,
        detail: String,
    },

    /// Keystone answered a list with `"truncated": true` (its `list_limit` applies): using the partial list
    /// could create duplicates or delete the wrong things, so it is an error.
    #[error(
        "{method} {path}: Keystone truncated the list (list_limit); refusing to act on partial data, \
         narrow the filter or raise list_limit"
    )]
    Truncated { method: String, path: String },

    /// A success response whose body or headers are not what the Keystone v3 API documents.
    #[error("{method} {path}: unexpected response: {reason}")]
    Decode {
        method: String,
        path: String,
        reason: String,
    },

    /// A lookup by name matched more than one object.
    #[error("{what} named '{name}' is ambiguous: {count} matches")]
    Ambiguous {
        what: &'static str,
        name: String,
        count: usize,
    },
}

impl Error {
    /// Short, stable name of the error kind: a metric label, a log field, an Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Config(_) => "Config",
            Error::CaBundle(_) => "CaBundle",
            Error::AuthFailed { .. } | Error::Unauthorized { .. } => "Unauthorized",
            Error::Forbidden { .. } => "Forbidden",
            Error::NotFound { .. } => "NotFound",
            Error::Conflict { .. } => "Conflict",
            Error::Api { .. } => "Api",
            Error::Timeout { .. } => "Timeout",
            Error::Transport { .. } => "Transport",
            Error::Truncated { .. } => "Truncated",
            Error::Decode { .. } => "Decode",
            Error::Ambiguous { .. } => "Ambiguous",
        }
    }

    /// The HTTP status Keystone answered, when the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::AuthFailed { .. } | Error::Unauthorized { .. } => Some(401),
            Error::Forbidden { .. } => Some(403),
            Error::NotFound { .. } => Some(404),
            Error::Conflict { .. } => Some(409),
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying later may help (outage, timeout, 5xx, 429), as opposed to a configuration or
    /// permission problem that needs a change first.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Transport { .. } => true,
            Error::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Builds the error for a non-success response from its status and body.
pub(crate) fn from_status(method: &str, path: &str, status: u16, message: String) -> Error {
    let (method, path) = (method.to_owned(), path.to_owned());
    match status {
        401 => Error::Unauthorized {
            method,
            path,
            message,
        },
        403 => Error::Forbidden {
            method,
            path,
            message,
        },
        404 => Error::NotFound {
            method,
            path,
            message,
        },
        409 => Error::Conflict {
            method,
            path,
            message,
        },
        _ => Error::Api {
            method,
            path,
            status,
            message,
        },
    }
}

/// Keystone's error body: `{"error": {"code": 404, "title": "Not Found", "message": "..."}}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

/// Longest Keystone error message kept.
const MAX_MESSAGE: usize = 300;

/// Keystone's message from its JSON error document (`{"error": {"message": ...}}`), cut to a few hundred
/// characters, control characters replaced, with `secrets` redacted. Anything else — an HTML page, some other
/// server's answer — is described by its size only, never quoted: whatever the URL points at, its content
/// does not reach a log line, an Event or a status condition.
pub(crate) fn error_message(body: &[u8], secrets: &[&str]) -> String {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: ErrorDetail { message: Some(m), .. },
        }) => m,
        Ok(ErrorBody {
            error: ErrorDetail { title: Some(t), .. },
        }) => t,
        _ if body.is_empty() => return "(empty body)".to_owned(),
        _ => return format!("(not a Keystone error document: {} bytes, not shown)", body.len()),
    };
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let message = redact(&message, secrets);
    if message.chars().count() > MAX_MESSAGE {
        format!("{}…", message.chars().take(MAX_MESSAGE).collect::<String>())
    } else {
        message
    }
}

/// Replaces every occurrence of each non-empty secret with `<redacted>`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |acc, s| acc.replace(s, "<redacted>"))
}

/// The whole source chain of an error on one line (reqwest's top-level message alone is often just
/// "error sending request"; the cause, "connection refused", is further down).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A value shown as `<redacted>` by `Debug`.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_message_is_extracted_and_secrets_redacted() {
        let body = br#"{"error": {"code": 400, "title": "Bad Request", "message": "Invalid input for field 'password': 's3cret' is bad"}}"#;
        let message = error_message(body, &["s3cret", ""]);
        assert_eq!(message, "Invalid input for field 'password': '<redacted>' is bad");
    }

    #[test]
    fn a_body_that_is_not_keystones_is_never_quoted() {
        // Some other server behind the URL: its content must not come back in an error.
        let body = b"<html><body>internal admin page: db_password=hunter2</body></html>";
        let message = error_message(body, &[]);
        assert_eq!(
            message,
            format!("(not a Keystone error document: {} bytes, not shown)", body.len())
        );
        assert!(!message.contains("hunter2"));
        let json_not_keystone = br#"{"items": ["secret-value"]}"#;
        assert!(!error_message(json_not_keystone, &[]).contains("secret-value"));
        assert_eq!(error_message(b"", &[]), "(empty body)");
    }

    #[test]
    fn keystone_messages_are_capped_and_single_line() {
        let long = format!(
            r#"{{"error": {{"code": 400, "message": "a\nb\r{}"}}}}"#,
            "x".repeat(1000)
        );
        let message = error_message(long.as_bytes(), &[]);
        assert!(message.starts_with("a b xxx"), "{message}");
        assert!(message.chars().count() <= MAX_MESSAGE + 1);
        assert!(!message.contains('\n') && !message.contains('\r'));
    }

    #[test]
    fn categories_and_statuses() {
        let e = from_status("GET", "/v3/services", 409, "dup".into());
        assert_eq!((e.category(), e.status()), ("Conflict", Some(409)));
        let e = from_status("GET", "/v3/services", 503, "down".into());
        assert_eq!(
            (e.category(), e.status(), e.is_transient()),
            ("Api", Some(503), true)
        );
        let e = from_status("GET", "/v3/services", 403, "no".into());
        assert_eq!((e.category(), e.is_transient()), ("Forbidden", false));
    }
}
