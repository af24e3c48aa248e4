//! The three Dockerfiles: each runs exactly the release build of `make release`, copies its own binary into a
//! non-root distroless image, and passes hadolint. CI builds them as they are with buildah
//! (`OPERATOR_IMAGES=dockerfiles make test-node`) and runs the images on the real node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use packaging::{hadolint, repo_root, run};

/// The `cargo build` command of the Makefile's `release` target.
fn release_build() -> String {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    let recipe = makefile
        .split("\nrelease:")
        .nth(1)
        .expect("Makefile has a release target");
    let line = recipe
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("release target runs cargo build");
    line.trim().to_owned()
}

/// The Dockerfile's instructions with line continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() && current.is_empty() {
            continue;
        }
        if let Some(cont) = l.strip_suffix('\\') {
            current.push_str(cont.trim_end());
            current.push(' ');
        } else {
            current.push_str(l);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

#[test]
fn release_build_covers_the_three_controllers() {
    let build = release_build();
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    for c in ["api", "fernet", "db"] {
        assert!(build.contains(&format!("-p keystone-{c}-controller")), "{build}");
    }
}

#[test]
fn each_dockerfile_runs_the_release_build_and_ships_its_own_binary() {
    let build = release_build();
    for c in ["api", "fernet", "db"] {
        let path = repo_root().join(format!("Dockerfile.{c}"));
        let text = std::fs::read_to_string(&path).unwrap();
        let ins = instructions(&text);
        let binary = format!("keystone-{c}-controller");
        let builds: Vec<&String> = ins.iter().filter(|i| i.contains("cargo build")).collect();
        assert_eq!(builds.len(), 1, "{}: one cargo build", path.display());
        let cmd = builds[0]
            .split("cargo build")
            .nth(1)
            .and_then(|rest| rest.split("&&").next())
            .map(|args| format!("cargo build{}", args.trim_end()))
            .unwrap();
        assert_eq!(
            cmd.split_whitespace().collect::<Vec<_>>(),
            build.split_whitespace().collect::<Vec<_>>(),
            "{}",
            path.display()
        );
        assert!(
            builds[0].contains(&format!("target/release/{binary} /out/{binary}")),
            "{}: installs its own binary: {}",
            path.display(),
            builds[0]
        );
        let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
        assert_eq!(froms.len(), 2, "{}: build and runtime stages", path.display());
        for f in &froms {
            assert!(
                !f.contains(":latest") && f.contains(':'),
                "{}: pinned base image: {f}",
                path.display()
            );
        }
        assert!(
            froms[1].contains(":nonroot"),
            "{}: non-root runtime",
            path.display()
        );
        assert!(
            ins.contains(&format!(
                "COPY --from=build /out/{binary} /usr/local/bin/{binary}"
            )),
            "{}",
            path.display()
        );
        assert!(ins.contains(&"USER 65532:65532".to_owned()), "{}", path.display());
        assert!(
            ins.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "{}",
            path.display()
        );
        // The runtime stage is the last one: nothing after it may switch back to root.
        let last_from = ins.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
        assert!(
            !ins[last_from..]
                .iter()
                .any(|i| i.starts_with("USER root") || i.starts_with("USER 0"))
        );
    }
}

#[test]
fn dockerfiles_pass_hadolint() {
    let hadolint = hadolint();
    for file in [
        "Dockerfile.api",
        "Dockerfile.fernet",
        "Dockerfile.db",
        "bundle.Dockerfile",
    ] {
        let path = repo_root().join(file);
        let out = run(Command::new(&hadolint).arg(&path), None);
        assert!(
            out.status.success(),
            "{}:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // hadolint does find problems (so a pass means something): a Dockerfile with known issues fails.
    let bad = std::env::temp_dir().join(format!("Dockerfile.bad-{}", std::process::id()));
    std::fs::write(
        &bad,
        "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n",
    )
    .unwrap();
    let out = run(Command::new(&hadolint).arg(&bad), None);
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("DL3007"), "{report}");
}
