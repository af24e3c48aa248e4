//! Prints the project's CRDs as YAML: `cargo run -p keystone-types --bin crdgen > manifests/crds/keystone.openstack.org_keystoneapis.yaml`
//! (`hack/gen-crds.sh` does this and copies the result into the chart).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", keystone_types::crds_yaml()?);
    Ok(())
}
