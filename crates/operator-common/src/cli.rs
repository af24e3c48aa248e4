//! Command-line options every controller binary accepts (each also reads them from the environment).

use std::net::SocketAddr;

use crate::telemetry::LogFormat;

/// Options shared by the three controllers; flatten this into each binary's own `clap` struct.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "KEYSTONE_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log format: json (for the cluster) or compact (for a terminal).
    #[arg(
        long,
        env = "KEYSTONE_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,

    /// Default log filter when RUST_LOG is unset (tracing EnvFilter syntax).
    #[arg(long, env = "KEYSTONE_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Watch only this namespace (default: all namespaces). Empty means all namespaces, as OLM's
    /// `olm.targetNamespaces` annotation says for an AllNamespaces install; a comma-separated list (OLM's
    /// MultiNamespace mode) is refused: run one operator per namespace, or one for all.
    #[arg(long, env = "KEYSTONE_OPERATOR_WATCH_NAMESPACE", value_parser = parse_watch_namespace)]
    pub namespace: Option<String>,

    /// How long to wait at startup for the KeystoneAPI CRD to become Established when it exists but is not
    /// yet established (a CRD that is not installed at all fails at once).
    #[arg(long, env = "KEYSTONE_OPERATOR_CRD_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub crd_wait: std::time::Duration,

    /// Reconciles run at the same time, per kind of object. Bounds memory: at start-up (an upgrade, a
    /// failover) every existing KeystoneAPI is reconciled at once, and without a bound 500 of them took the
    /// api controller to 229 MiB (BENCHMARKS.md, "Scale").
    #[arg(long, env = "KEYSTONE_OPERATOR_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Leader election: with several replicas, only the holder of the Lease reconciles.
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

impl CommonArgs {
    /// The `kube::runtime::Controller` settings these arguments ask for.
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.concurrency)
    }

    /// The watched namespace, or `None` for all namespaces (an empty value means all).
    pub fn watch_namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|ns| !ns.is_empty())
    }
}

/// One namespace name, or empty for all namespaces; several (comma-separated) are refused with the reason.
pub fn parse_watch_namespace(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.contains(',') {
        return Err(format!(
            "{s:?} names several namespaces; a controller watches one namespace or all of them \
             (OLM: install in OwnNamespace, SingleNamespace or AllNamespaces mode, not MultiNamespace)"
        ));
    }
    Ok(s.to_owned())
}

/// Leader-election options (client-go's meanings and defaults).
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderElectionArgs {
    /// Hold a Lease before reconciling, so that only one replica acts. Required when running more than one
    /// replica of a controller.
    #[arg(
        long = "leader-elect",
        env = "KEYSTONE_OPERATOR_LEADER_ELECT",
        default_value_t = false
    )]
    pub leader_elect: bool,

    /// Namespace of the Lease (default: the pod's own namespace, or the kubeconfig's).
    #[arg(
        long = "leader-election-namespace",
        env = "KEYSTONE_OPERATOR_LEADER_ELECTION_NAMESPACE"
    )]
    pub lease_namespace: Option<String>,

    /// How long a standby waits, after the lease last changed, before taking it over.
    #[arg(long = "leader-election-lease-duration", env = "KEYSTONE_OPERATOR_LEADER_ELECTION_LEASE_DURATION",
          default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: std::time::Duration,

    /// How long the leader keeps acting without a successful renewal before it exits.
    #[arg(long = "leader-election-renew-deadline", env = "KEYSTONE_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE",
          default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: std::time::Duration,

    /// Time between attempts to take or renew the lease.
    #[arg(long = "leader-election-retry-period", env = "KEYSTONE_OPERATOR_LEADER_ELECTION_RETRY_PERIOD",
          default_value = "2s", value_parser = parse_duration)]
    pub retry_period: std::time::Duration,
}

impl LeaderElectionArgs {
    /// The timings as the lease gate takes them.
    pub fn timings(&self) -> crate::lease::Timings {
        crate::lease::Timings {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }
}

/// Parses a duration flag (`500ms`, `30s`, `5m`, `2h`, `1h30m`: the Go syntax the KeystoneAPI spec uses).
/// Values past Go's largest duration (about 292 years) are refused, never saturated into something else.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    keystone_types::duration::parse(s.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;

    use super::{parse_duration, parse_watch_namespace};

    #[rstest]
    #[case("500ms", Duration::from_millis(500))]
    #[case("30s", Duration::from_secs(30))]
    #[case("5m", Duration::from_secs(300))]
    #[case("2h", Duration::from_secs(7200))]
    fn parses(#[case] input: &str, #[case] want: Duration) {
        assert_eq!(parse_duration(input), Ok(want));
    }

    #[rstest]
    #[case("")]
    #[case("30")]
    #[case("s")]
    #[case("5124095576030432h")]
    #[case("3d")]
    fn rejects(#[case] input: &str) {
        assert!(parse_duration(input).is_err(), "{input:?} accepted");
    }

    #[rstest]
    #[case("keystone", "keystone")]
    #[case(" keystone ", "keystone")]
    #[case("", "")]
    fn watch_namespace_accepts_one_or_none(#[case] input: &str, #[case] want: &str) {
        assert_eq!(parse_watch_namespace(input).as_deref(), Ok(want));
    }

    #[test]
    fn watch_namespace_refuses_several() {
        let err = parse_watch_namespace("a,b").unwrap_err();
        assert!(err.contains("MultiNamespace"), "{err}");
    }

    #[test]
    fn empty_watch_namespace_means_all() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            common: super::CommonArgs,
        }
        let all = Cli::parse_from(["c", "--namespace="]);
        assert_eq!(all.common.watch_namespace(), None);
        let one = Cli::parse_from(["c", "--namespace=ks"]);
        assert_eq!(one.common.watch_namespace(), Some("ks"));
        assert!(Cli::try_parse_from(["c", "--namespace=a,b"]).is_err());
    }

    #[test]
    fn concurrency_is_bounded_and_at_least_one() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            common: super::CommonArgs,
        }
        assert_eq!(Cli::parse_from(["c"]).common.concurrency, 8);
        assert_eq!(Cli::parse_from(["c", "--concurrency=2"]).common.concurrency, 2);
        let err = Cli::try_parse_from(["c", "--concurrency=0"])
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("--concurrency")),
            "{err:?}"
        );
    }
}
