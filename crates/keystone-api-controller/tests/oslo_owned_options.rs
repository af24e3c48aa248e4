//! The refusal of operator-owned options in `customServiceConfig`, proven against oslo.config itself (Debian's
//! python3-keystone with oslo.config, oslo.db and oslo.policy, installed by `hack/install-test-deps.sh`): for
//! every snippet of a corpus of the syntaxes oslo.config reads, whenever oslo.config lets the snippet change an
//! owned option, the operator refuses it, and whenever oslo.config cannot parse it, the operator reports that.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use keystone_api_controller::validate::owned_options;

/// The system Python (the one Debian's Keystone is installed for), whatever `python3` is first on PATH.
const PYTHON: &str = "/usr/bin/python3";
const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oslo/owned_options_oracle.py");

fn oracle(args: &[&str], stdin: &str) -> Value {
    let mut child = Command::new(PYTHON)
        .arg(ORACLE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{PYTHON}: {e} (hack/install-test-deps.sh installs python3-keystone)"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the oslo.config oracle failed (is Debian's python3-keystone installed? hack/install-test-deps.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Snippets in every syntax oslo.config reads, harmless and hostile.
const CORPUS: &[&str] = &[
    // ordinary, allowed
    "[DEFAULT]\ndebug = true\n",
    "[cache]\nbackend = dogpile.cache.memcached\n[identity]\ndriver = ldap\n",
    "[token]\ncaching = false\ncache_time = 600\n",
    "[database]\nmax_pool_size = 10\nconnection_recycle_time = 600\n",
    "[oslo_policy]\npolicy_file = policy.yaml\n",
    "# [database]\n# connection = commented\n; [token] expiration = 1\n",
    "[token]\nEXPIRATION = 9\nExpiration: 9\n",
    "[default]\nsql_connection = ignored-group\n",
    "[ database ]\nconnection = another-group\n",
    "[database]\n  connection = a continuation of nothing\n",
    // the plain forms
    "[database]\nconnection = sqlite://\n",
    "[token]\nexpiration=60\n",
    "[token]\nallow_expired_window = 1\n",
    "[token]\nprovider = jws\n",
    "[fernet_tokens]\nmax_active_keys = 2\n",
    "[fernet_receipts]\nkey_repository = /tmp\n",
    "[credential]\nkey_repository = /tmp/keys\n",
    "[oslo_policy]\nenforce_scope = false\nenforce_new_defaults = false\n",
    // key: value, quotes, spaces, case of the group
    "[database]\nconnection: sqlite://\n",
    "[database]\nconnection : 'sqlite://'\n",
    "[DATABASE]\nconnection = sqlite://\n",
    "[Token]\nexpiration = 5\n",
    "[token]\n  \nexpiration = 5\n",
    "[token]\nexpiration=5:6\n",
    "[token]\nexpiration:5=6\n",
    "[token]\n\u{b}expiration = 5\n",
    "[token]\n\u{1c}expiration\u{1f} = 5\n",
    "[token]\u{1d}\nexpiration = 5\n",
    // line breaks: \r alone, \r\n
    "[DEFAULT]\rdebug = true\r[database]\rconnection = sqlite://\r",
    "[database]\r\nconnection = sqlite://\r\n",
    // an indented header continues the previous value: the option is still in the group before
    "[database]\nmax_pool_size = 1\n [token]\nconnection = sqlite://\n",
    "[token]\ncaching = true\n\t[cache]\nexpiration = 5\n",
    // continuation lines of an owned option
    "[database]\nconnection =\n  sqlite://\n",
    // deprecated names oslo.config still reads
    "[DEFAULT]\nsql_connection = sqlite://\n",
    "[database]\nsql_connection = sqlite://\n",
    "[DATABASE]\nsql_connection = sqlite://\n",
    "[sql]\nconnection = sqlite://\n",
    // duplicate groups merge
    "[cache]\nenabled = true\n[database]\nmax_pool_size = 1\n[cache]\nx = 1\n[database]\nconnection = sqlite://\n",
    // text oslo.config cannot parse: Keystone would not start
    "connection = sqlite://\n",
    "[database\nconnection = sqlite://\n",
    "[]\n",
    "[database]\njust words\n",
    "[database]\n= value\n",
    "  leading continuation\n",
];

/// The owned options the operator finds, as `[group] option` (without the hint).
fn ours(snippet: &str) -> Result<Vec<String>, String> {
    owned_options(snippet).map(|found| {
        let mut names: Vec<String> = found
            .iter()
            .map(|f| f.split(" (").next().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names
    })
}

#[test]
fn every_owned_option_oslo_config_would_apply_is_refused() {
    let verdicts = oracle(&[], &serde_json::to_string(CORPUS).unwrap());
    let verdicts = verdicts.as_array().unwrap();
    assert_eq!(verdicts.len(), CORPUS.len());
    let mut wrong = Vec::new();
    let (mut refused, mut unparseable) = (0, 0);
    for (snippet, verdict) in CORPUS.iter().zip(verdicts) {
        match (verdict.get("error"), ours(snippet)) {
            (Some(_), Err(_)) => unparseable += 1,
            // A bad value for an owned option: refused either way.
            (Some(_), Ok(found)) if !found.is_empty() => refused += 1,
            (Some(e), Ok(found)) => wrong.push(format!(
                "{snippet:?}: oslo.config cannot parse it ({e}); the operator read {found:?}"
            )),
            (None, Err(e)) => wrong.push(format!(
                "{snippet:?}: oslo.config parses it; the operator says {e}"
            )),
            (None, Ok(found)) => {
                let changed: Vec<String> = verdict
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                if !changed.is_empty() {
                    refused += 1;
                    if found.is_empty() {
                        wrong.push(format!(
                            "{snippet:?}: oslo.config changes {changed:?}; the operator refuses nothing"
                        ));
                    }
                } else if !found.is_empty() {
                    wrong.push(format!(
                        "{snippet:?}: oslo.config changes no owned option; the operator refuses {found:?}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} snippets:\n{}",
        wrong.len(),
        CORPUS.len(),
        wrong.join("\n")
    );
    // The corpus exercises all three outcomes.
    assert!(
        refused >= 20 && unparseable >= 5,
        "{refused} refused, {unparseable} unparseable"
    );
}

/// Every deprecated name oslo.config still reads for an owned option is refused too.
#[test]
fn deprecated_names_of_owned_options_are_refused() {
    let aliases = oracle(&["--aliases"], "");
    let mut checked = 0;
    for entry in aliases.as_array().unwrap() {
        let group = entry[0].as_str().unwrap();
        let name = entry[1].as_str().unwrap();
        for alias in
            std::iter::once(&serde_json::json!([group, name])).chain(entry[2].as_array().unwrap().iter())
        {
            let (g, o) = (alias[0].as_str().unwrap(), alias[1].as_str().unwrap());
            let snippet = format!("[{g}]\n{o} = x\n");
            let found = ours(&snippet).unwrap();
            assert!(
                !found.is_empty(),
                "[{g}] {o} (for [{group}] {name}) is not refused"
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked} names checked");
}
