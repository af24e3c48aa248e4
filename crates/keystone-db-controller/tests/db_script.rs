//! The database Job's script against a real MariaDB: creates the database and user idempotently, applies a
//! changed password, and works with passwords full of quotes, `$`, backticks, `%`, spaces and non-ASCII;
//! with `create: false` it only checks the connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keystone_db_controller::build::jobs::DB_CREATE_SCRIPT;
use test_support::mariadb::MariaDb;

const ROOT: &str = "r00t'\"$`%{{x}}";

fn run(db: &mut MariaDb, create: bool, user: &str, password: &str) -> (bool, String) {
    let port = db.port.to_string();
    let root = db.root_password.clone();
    db.python(
        DB_CREATE_SCRIPT,
        &[
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_NAME", "keystone"),
            ("DB_USER", user),
            ("DB_CREATE", if create { "true" } else { "false" }),
            ("DB_PASSWORD", password),
            ("DB_ROOT_PASSWORD", &root),
        ],
    )
}

#[test]
fn creates_database_and_user_with_any_password_and_applies_changes() {
    let mut db = MariaDb::start(ROOT);
    let passwords = [
        "plain",
        "quo'te\"s",
        "$HOME and ${x} $(id)",
        "back`tick`",
        "per%cent%s %d",
        "sp ace",
        "ünïcødé-密码",
        "{{x}}&\\n",
    ];
    for (i, pw) in passwords.iter().enumerate() {
        let user = format!("keystone{i}");
        let (ok, out) = run(&mut db, true, &user, pw);
        assert!(ok, "create with password {pw:?} failed: {out}");
        // idempotent
        let (ok, out) = run(&mut db, true, &user, pw);
        assert!(ok, "second run with password {pw:?} failed: {out}");
        // create: false is a connection check with the same password
        let (ok, out) = run(&mut db, false, &user, pw);
        assert!(ok, "connection check with password {pw:?} failed: {out}");
        assert!(!out.contains(pw), "the script printed the password: {out}");
    }
    // A changed password is applied (ALTER USER); the old one stops working.
    let (ok, out) = run(&mut db, true, "keystone0", "rotated $ 'pw'");
    assert!(ok, "{out}");
    assert!(run(&mut db, false, "keystone0", "rotated $ 'pw'").0);
    let (ok, _) = run(&mut db, false, "keystone0", "plain");
    assert!(!ok, "the old password still works");
    // A wrong root password fails, and says so.
    db.root_password = "wrong".into();
    let (ok, out) = run(&mut db, true, "keystone9", "x");
    assert!(!ok);
    assert!(out.contains("Access denied"), "{out}");
}
