//! Generated files are in step with the code: the CRD YAML in manifests/ and in the chart, and the README's
//! condition table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

#[test]
fn crd_manifests_match_the_code() {
    let generated = keystone_types::crds_yaml().expect("CRD YAML");
    for path in [
        "manifests/crds/keystone.openstack.org_keystoneapis.yaml",
        "charts/keystone-operator/crds/keystone.openstack.org_keystoneapis.yaml",
    ] {
        assert!(
            repo_file(path) == generated,
            "{path} is out of date with the code; regenerate it with `make generate`"
        );
    }
}

#[test]
fn readme_holds_the_condition_contract() {
    let readme = repo_file("README.md");
    let table = keystone_types::conditions::contract_markdown();
    assert!(
        readme.contains(&table),
        "README.md's condition table differs from keystone_types::conditions::CONTRACT; paste this:\n{table}"
    );
}
