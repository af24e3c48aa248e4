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
    let files = keystone_types::crd_files().expect("CRD YAML");
    assert_eq!(files.len(), 3);
    for dir in ["manifests/crds", "charts/keystone-operator/crds"] {
        for (file, generated) in &files {
            let path = format!("{dir}/{file}");
            assert!(
                repo_file(&path) == *generated,
                "{path} is out of date with the code; regenerate it with `make generate`"
            );
        }
        let on_disk = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir))
            .unwrap()
            .count();
        assert_eq!(
            on_disk,
            files.len(),
            "{dir} holds CRD files the code does not generate"
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
