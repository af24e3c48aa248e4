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

/// The script reports how many encrypted credentials the database holds (none before db-sync made the table),
/// through the termination message the db controller reads, so that no credential keys are made that cannot
/// decrypt them.
#[test]
fn counts_the_encrypted_credentials_the_database_already_holds() {
    let mut db = MariaDb::start(ROOT);
    let log = std::env::temp_dir().join(format!("termination-log-{}", std::process::id()));
    let run_logged = |db: &mut MariaDb| {
        let port = db.port.to_string();
        let root = db.root_password.clone();
        let (ok, out) = db.python(
            DB_CREATE_SCRIPT,
            &[
                ("DB_HOST", "127.0.0.1"),
                ("DB_PORT", &port),
                ("DB_NAME", "keystone"),
                ("DB_USER", "keystone"),
                ("DB_CREATE", "true"),
                ("DB_PASSWORD", "pw"),
                ("DB_ROOT_PASSWORD", &root),
                ("TERMINATION_LOG", log.to_str().unwrap()),
            ],
        );
        assert!(ok, "{out}");
        keystone_db_controller::build::jobs::stored_credentials(&std::fs::read_to_string(&log).unwrap())
    };
    // A new database: no credential table yet.
    assert_eq!(run_logged(&mut db), Some(0));
    // db-sync made the table, and credentials were stored with some keys.
    let port = db.port.to_string();
    let (ok, out) = db.python(
        "import os, pymysql\n\
         c = pymysql.connect(host='127.0.0.1', port=int(os.environ['P']), user='keystone', password=b'pw', database='keystone')\n\
         cur = c.cursor()\n\
         cur.execute('CREATE TABLE credential (id VARCHAR(64) PRIMARY KEY, encrypted_blob TEXT)')\n\
         cur.execute(\"INSERT INTO credential VALUES ('a', 'x'), ('b', 'y'), ('c', 'z')\")\n\
         c.commit()\n",
        &[("P", &port)],
    );
    assert!(ok, "{out}");
    assert_eq!(run_logged(&mut db), Some(3));
    let _ = std::fs::remove_file(&log);
}
