//! A private MariaDB server for tests: its own data directory and port on 127.0.0.1, root password set,
//! stopped (by PID) when dropped. Needs Debian's `mariadb-server` (hack/install-test-deps.sh installs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mariadbd.
pub struct MariaDb {
    child: Child,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The root password.
    pub root_password: String,
    dir: PathBuf,
}

impl MariaDb {
    /// Initialises a data directory and starts the server; panics with the reason when it cannot.
    pub fn start(root_password: &str) -> MariaDb {
        let dir = std::env::temp_dir().join(format!(
            "keystone-operator-mariadb-{}-{}",
            std::process::id(),
            crate::http::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("data dir");
        let data = dir.join("data");
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .unwrap_or_else(|e| {
                panic!("mariadb-install-db not runnable ({e}); run hack/install-test-deps.sh")
            });
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::http::free_port();
        let socket = dir.join("mysqld.sock");
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let mut db = MariaDb {
            child,
            port,
            root_password: root_password.to_owned(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // root has no password yet and may log in over the socket; set it, which also proves the server is up
        loop {
            let set = db.python(&format!(
                "import pymysql, os\nc = pymysql.connect(unix_socket={:?}, user='root', autocommit=True)\n\
                 c.cursor().execute(\"ALTER USER 'root'@'localhost' IDENTIFIED BY %s\", (os.environ['P'],))\n\
                 c.cursor().execute(\"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY %s\", (os.environ['P'],))\n\
                 c.cursor().execute(\"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %s\", (os.environ['P'],))\n\
                 c.cursor().execute(\"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION\")\n",
                socket.display().to_string()
            ), &[("P", root_password)]);
            if set.0 {
                break;
            }
            assert!(Instant::now() < deadline, "mariadbd did not come up: {}", set.1);
            std::thread::sleep(Duration::from_millis(200));
        }
        db
    }

    /// Runs `/usr/bin/python3 -c code` with `env`; returns success and the combined output.
    pub fn python(&mut self, code: &str, env: &[(&str, &str)]) -> (bool, String) {
        let out = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(code)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().copied())
            .output()
            .expect("python3");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
