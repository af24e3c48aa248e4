//! A wrapper for secret values (passwords, keys, transport URLs). Its `Debug` and `Display` never print the
//! value, so a secret that ends up in a log line, an error or an Event shows as `[redacted]`. The value is
//! reached only through [`Redacted::expose`], which makes every use of a secret visible in review.

use std::fmt;

/// A secret value that formats as `[redacted]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value itself. Call this only where the value is written into the object that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct DbSettings {
        user: String,
        password: Redacted<String>,
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = DbSettings {
            user: "keystone".into(),
            password: Redacted::new("s3cr3t$`'\"".into()),
        };
        let debug = format!("{s:?} {s:#?} {}", s.password);
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("[redacted]"));
        assert!(debug.contains("keystone"));
        assert_eq!(s.password.expose(), "s3cr3t$`'\"");
    }
}
