//! Writes the project's CRDs as YAML, one `<group>_<plural>.yaml` file each, into the directory given:
//! `cargo run -p keystone-types --bin crdgen -- manifests/crds` (`hack/gen-crds.sh` does this and copies the
//! result into the chart).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: crdgen DIR")?;
    std::fs::create_dir_all(&dir)?;
    for (file, content) in keystone_types::crd_files()? {
        std::fs::write(std::path::Path::new(&dir).join(file), content)?;
    }
    Ok(())
}
