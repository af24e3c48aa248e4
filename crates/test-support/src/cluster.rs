//! The shared local control plane and fresh namespaces.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::OnceCell;

/// The repository root (tests run with the crate directory as cwd).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A running control plane: its kubeconfig path.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    fn up(name: &str, extra: &[&str]) -> Cluster {
        let script = repo_root().join("hack/local-cluster.sh");
        let out = Command::new(&script)
            .arg("up")
            .args(["--name", name])
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "the local control plane `{name}` did not start ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kubeconfig = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .unwrap_or_else(|| panic!("local-cluster.sh printed no KUBECONFIG: {stdout}"));
        Cluster {
            kubeconfig: PathBuf::from(kubeconfig),
        }
    }

    /// A client for this control plane.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }
}

impl Cluster {
    /// Writes a kubeconfig that authenticates as ServiceAccount `namespace/name` (a one-hour token from the
    /// TokenRequest API) to the same apiserver, and returns its path. The file lives next to the admin one.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        use k8s_openapi::api::authentication::v1::TokenRequest;
        use k8s_openapi::api::core::v1::ServiceAccount;
        let client = self.client().await;
        let sas: Api<ServiceAccount> = Api::namespaced(client, namespace);
        let request: TokenRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": { "expirationSeconds": 3600 }
        }))
        .expect("token request");
        let token = sas
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
            .status
            .expect("token status")
            .token;
        let admin: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig"))
                .expect("kubeconfig yaml");
        let cluster = admin["clusters"][0]["cluster"].clone();
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{ "name": "c", "cluster": cluster }],
            "users": [{ "name": name, "user": { "token": token } }],
            "contexts": [{ "name": "c", "context": { "cluster": "c", "user": name, "namespace": namespace } }],
            "current-context": "c",
        });
        let path = self
            .kubeconfig
            .with_file_name(format!("sa-{namespace}-{name}.kubeconfig"));
        std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
        path
    }

    /// A client authenticated by the kubeconfig at `path`.
    pub async fn client_from(path: &Path) -> Client {
        let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }
}

static TEST: OnceCell<Cluster> = OnceCell::const_new();
static BARE: OnceCell<Cluster> = OnceCell::const_new();

/// The shared test control plane (etcd, kube-apiserver, kube-controller-manager) with the CRDs installed.
pub async fn test_cluster() -> &'static Cluster {
    TEST.get_or_init(|| async { tokio::task::block_in_place(|| Cluster::up("test", &[])) })
        .await
}

/// A second control plane with no CRDs and no controller manager, for start-up failure tests.
pub async fn bare_cluster() -> &'static Cluster {
    BARE.get_or_init(|| async {
        tokio::task::block_in_place(|| Cluster::up("bare", &["--no-crds", "--no-kcm"]))
    })
    .await
}

/// Another named control plane (started or reused); `extra` are `local-cluster.sh up` options.
pub async fn named_cluster(name: &str, extra: &[&str]) -> Cluster {
    let (name, extra) = (
        name.to_owned(),
        extra.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Cluster::up(&name, &extra)
    })
    .await
    .expect("local-cluster.sh up")
}

/// A client for the shared test control plane.
pub async fn client() -> Client {
    test_cluster().await.client().await
}

/// A namespace created for one test; `delete` removes it (the namespace controller finishes the job).
pub struct TestNamespace {
    /// Namespace name.
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<pid>-<n>`.
    pub async fn new(client: &Client, prefix: &str) -> TestNamespace {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "keystone-operator-test": "true" } }
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        TestNamespace {
            name,
            client: client.clone(),
        }
    }

    /// Deletes the namespace (and with it everything the test created).
    pub async fn delete(self) {
        let _ = Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}
