//! Admission patterns and CEL rules shared by the CRDs: every spec string that reaches a config file, a URL,
//! an annotation, an object reference or a CronJob is checked by the API server with a message naming the field.
//!
//! Patterns are RE2 (what the API server evaluates `pattern` and CEL `matches()` with). CEL rules are written as
//! raw strings: what is here is exactly the CEL source, in which `'\\s'` is the regex `\s`.

use kube::core::{Message, Reason, Rule};

/// A DNS-1123 subdomain, as Kubernetes requires for the names of Secrets, ConfigMaps, IngressClasses and
/// NetworkAttachmentDefinitions (at most 253 characters, checked by `length`).
pub const DNS1123_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key of a Secret's or ConfigMap's data, as Kubernetes requires (at most 253 characters).
pub const DATA_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// A name without control characters (no line breaks, tabs, NUL, DEL or C1 controls): Keystone region, user,
/// project and service names, which reach environment variables, config and URLs.
pub const NO_CONTROL: &str = r"^\P{Cc}+$";

/// A KeystoneAPI name (see the CRD's name rule): what catalog objects may refer to.
pub const KEYSTONE_API_NAME: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// CEL: `self` is a host name (DNS labels of letters, digits and `-`, dot-separated, an optional final dot) or
/// an IPv4/IPv6 address written bare (no brackets, no zone).
const HOST_CEL: &str = r"(isIP(self) || self.matches('^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\\.?$'))";

/// A host: a DNS name (FQDN or short, such as a Service name) or an IP address.
pub fn host_rule(field: &str) -> Rule {
    Rule::new(HOST_CEL)
        .message(Message::Message(format!(
            "{field} must be a host name (such as openstack or db.example.com) or an IPv4/IPv6 address"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// A TCP port 1-65535, as a regex group.
const PORT: &str = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";

/// A memcached server: `host:port`, `[ipv6]:port`, `inet6:[ipv6]:port` or an IPv6 address followed by `:port`,
/// with the host a DNS name or an IP address and the port 1-65535.
pub fn memcached_server_rule() -> Rule {
    let dns =
        r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\\.?$";
    let cel = format!(
        r"self.matches('^(inet6:)?\\[[0-9A-Fa-f:.]+\\]:{PORT}$') ? isIP(self.substring(self.indexOf('[') + 1, self.indexOf(']'))) : (self.matches('^[^\\[\\]]+:{PORT}$') && (isIP(self.substring(0, self.lastIndexOf(':'))) || self.substring(0, self.lastIndexOf(':')).matches('{dns}')))"
    );
    Rule::new(cel)
        .message(Message::Message(
            "memcachedServers entries must be host:port with a host name or IP address (IPv6 as [addr]:port) and \
             a port from 1 to 65535"
                .into(),
        ))
        .reason(Reason::FieldValueInvalid)
}

/// CEL: an http(s) URL with a host, no userinfo (`user:password@`), no backslash, no whitespace or control
/// character anywhere, no query or fragment.
const URL_CEL: &str =
    r"self.matches('^https?://[^/?#@\\\\\\s]+(/[^?#\\s]*)?$') && !self.matches('[\\x00-\\x1f\\x7f]')";

/// An http(s) URL as Keystone's catalog and the operator's status hold them.
pub fn url_rule(field: &str) -> Rule {
    Rule::new(URL_CEL)
        .message(Message::Message(format!(
            "{field} must be an http:// or https:// URL with a host, without user:password@, query, fragment, \
             whitespace or control characters"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// The CEL of [`url_rule`] applied to a map's values (for the catalog's `endpoints`).
pub fn url_map_values_cel() -> String {
    format!(
        "self.all(k, {})",
        URL_CEL.replace("self.matches", "self[k].matches")
    )
}

/// Go duration syntax, as CEL `matches()` needs it.
pub const DURATION_REGEX: &str = r"^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// A token lifetime: Keystone counts it in whole seconds (`500ms` would become 0, a token that expires when
/// issued). Malformed values are left to the field's duration rule. (`string(int)` is priced out of the CEL
/// cost budget, so the check is on milliseconds; a sub-millisecond remainder is refused by the api controller.)
pub fn whole_seconds_rule(field: &str) -> Rule {
    Rule::new(format!(
        "!self.matches('{DURATION_REGEX}') || (duration(self) >= duration('1s') && \
         duration(self).getMilliseconds() % 1000 == 0)"
    ))
    .message(Message::Message(format!(
        "{field} must be a whole number of seconds, at least 1s (Keystone counts token lifetimes in seconds)"
    )))
    .reason(Reason::FieldValueInvalid)
}

/// A cron schedule exactly as the Kubernetes CronJob API accepts it (robfig/cron's standard parser): five
/// fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT; each a
/// comma list of `*`, `?`, a value, a range, with an optional `/step`), or a descriptor (`@hourly`, ...,
/// `@every <duration>`). Time zones (`CRON_TZ=`, `TZ=`) are refused as the API refuses them; the CronJob's own
/// `timeZone` is the way. Its quirks are kept (an empty list item is skipped, `*-5` means `*`). One check the API
/// makes is not expressed: a range whose start is after its end.
pub fn cron_pattern() -> String {
    fn field(value: &str) -> String {
        // robfig reads `*` or `?` followed by `-anything` as plain `*`, and skips empty list items.
        let item = format!(r"((\*|\?)(-[^,/\s]*)?|{value}(-{value})?)(/[0-9]*[1-9][0-9]*)?");
        format!("({item})?(,({item})?)*")
    }
    // Values are parsed as integers, so leading zeros are fine.
    let minute = field("0*[0-5]?[0-9]");
    let hour = field("0*([01]?[0-9]|2[0-3])");
    let dom = field("0*([1-9]|[12][0-9]|3[01])");
    let month = field("(0*([1-9]|1[0-2])|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))");
    let dow = field("(0*[0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))");
    let every = r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+";
    format!(
        r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every {every}|\s*{minute}\s+{hour}\s+{dom}\s+{month}\s+{dow}\s*)$"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cron_pattern_compiles_as_written() {
        // The API server compiles it with Go's RE2; Rust's regex crate has the same syntax for what is used.
        let p = cron_pattern();
        assert!(p.starts_with("^(") && p.ends_with(")$"), "{p}");
        assert!(!p.contains("TZ"));
    }
}
