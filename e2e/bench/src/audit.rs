//! Counting API requests from the apiserver's audit log (`hack/local-cluster.sh up --audit`): one JSON line
//! per request (stage ResponseComplete), with the user, the verb, the resource and the time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One audit event (the fields the benchmarks read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// get, list, watch, create, update, patch, delete, ...
    pub verb: String,
    /// Who made the request.
    pub user: User,
    /// What it was about.
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// When the response completed (RFC 3339, microseconds).
    pub stage_timestamp: String,
}

/// The requesting user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// e.g. `system:serviceaccount:keystone-operator:keystone-operator-api`.
    pub username: String,
}

/// The object of a request.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ObjectRef {
    /// Plural resource name.
    #[serde(default)]
    pub resource: String,
    /// `status`, ...
    #[serde(default)]
    pub subresource: Option<String>,
}

impl Entry {
    /// `resource` or `resource/subresource`.
    pub fn resource(&self) -> String {
        match &self.object_ref {
            Some(o) => match &o.subresource {
                Some(s) => format!("{}/{s}", o.resource),
                None => o.resource.clone(),
            },
            None => String::new(),
        }
    }

    /// Seconds since the epoch of `stage_timestamp`.
    pub fn at(&self) -> f64 {
        self.stage_timestamp
            .parse::<k8s_openapi::jiff::Timestamp>()
            .map(|t| t.as_millisecond() as f64 / 1000.0)
            .unwrap_or(0.0)
    }
}

/// The entries of the audit log (unreadable lines skipped).
pub fn read(path: &Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Counts of requests in a time window, by (user, class) where class is `verb resource`.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// (user, "verb resource") → count.
    pub by: BTreeMap<(String, String), u64>,
}

impl Counts {
    /// The requests of `users` between `from` and `to` (epoch seconds).
    pub fn window(entries: &[Entry], users: &[&str], from: f64, to: f64) -> Counts {
        let mut by = BTreeMap::new();
        for e in entries {
            let at = e.at();
            if at < from || at > to || !users.contains(&e.user.username.as_str()) {
                continue;
            }
            *by.entry((e.user.username.clone(), format!("{} {}", e.verb, e.resource())))
                .or_insert(0) += 1;
        }
        Counts { by }
    }

    /// Writes of `user`, split into (other writes, lease writes, event writes).
    pub fn writes(&self, user: &str) -> (u64, u64, u64) {
        let (mut other, mut leases, mut events) = (0, 0, 0);
        for ((u, class), n) in &self.by {
            if u != user {
                continue;
            }
            let mut parts = class.splitn(2, ' ');
            let verb = parts.next().unwrap_or_default();
            let resource = parts.next().unwrap_or_default();
            if !matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            ) {
                continue;
            }
            match resource {
                "leases" => leases += n,
                "events" => events += n,
                _ => other += n,
            }
        }
        (other, leases, events)
    }

    /// Reads (get, list, watch) of `user`.
    pub fn reads(&self, user: &str) -> u64 {
        self.by
            .iter()
            .filter(|((u, class), _)| {
                u == user
                    && (class.starts_with("get ")
                        || class.starts_with("list ")
                        || class.starts_with("watch "))
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// The write classes of `user` other than leases and events, for the report.
    pub fn write_classes(&self, user: &str) -> Vec<(String, u64)> {
        self.by
            .iter()
            .filter(|((u, class), _)| {
                u == user
                    && ["create ", "update ", "patch ", "delete "]
                        .iter()
                        .any(|v| class.starts_with(v))
                    && !class.ends_with(" leases")
                    && !class.ends_with(" events")
            })
            .map(|((_, c), n)| (c.clone(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_writes_by_user_apart_from_leases_and_events() {
        let line = |verb: &str, user: &str, res: &str, sub: Option<&str>, ts: &str| {
            serde_json::json!({"verb": verb, "user": {"username": user},
                "objectRef": {"resource": res, "subresource": sub}, "stageTimestamp": ts})
            .to_string()
        };
        let text = [
            line(
                "patch",
                "a",
                "keystoneapis",
                Some("status"),
                "2026-01-01T00:00:01.000000Z",
            ),
            line("update", "a", "leases", None, "2026-01-01T00:00:02.000000Z"),
            line("create", "a", "events", None, "2026-01-01T00:00:03.000000Z"),
            line("list", "a", "secrets", None, "2026-01-01T00:00:04.000000Z"),
            line("patch", "b", "secrets", None, "2026-01-01T00:00:05.000000Z"),
            line("patch", "a", "configmaps", None, "2026-01-01T00:10:00.000000Z"),
        ]
        .join("\n");
        let entries: Vec<Entry> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let from = entries[0].at();
        let c = Counts::window(&entries, &["a"], from, from + 10.0);
        assert_eq!(c.writes("a"), (1, 1, 1));
        assert_eq!(c.reads("a"), 1);
        assert_eq!(
            c.write_classes("a"),
            vec![("patch keystoneapis/status".to_owned(), 1)]
        );
        assert_eq!(c.writes("b"), (0, 0, 0));
    }
}
