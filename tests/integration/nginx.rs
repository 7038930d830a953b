//! A real nginx serving a remote cache on a free loopback port: the WebDAV setup Bazel
//! documents for its HTTP cache. Shared by the remote cache's tests and its benchmark.
//!
//! Locations (all over the same storage, `storage()`):
//!
//! - `/cache/` — read and write (`dav_methods PUT DELETE; create_full_put_path on;`);
//! - `/error/` — every request answers 500;
//! - `/slow/` — reads only, at 4 kB/s (`limit_rate`);
//! - `/private/` — reads only, with `Authorization: Bearer` [`TOKEN`] (401 without).
//!
//! nginx must be installed (`.ci/run` installs it with apt-get when it is missing); a test
//! that needs it fails, never skips, without it.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bearer token `/private/` wants.
pub const TOKEN: &str = "tok-3f9a-never-print-me";

pub struct Nginx {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The nginx executable: on PATH, else where Debian puts it.
fn executable() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("nginx")).find(|p| p.is_file()))
        .unwrap_or_default();
    on_path
        .or_else(|| {
            ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"].map(PathBuf::from).into_iter().find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("nginx is required by the remote cache's tests and is not installed: `apt-get install nginx` (.ci/run does it)")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free loopback port").local_addr().unwrap().port()
}

impl Nginx {
    /// Starts nginx serving a copy of `from`'s storage.
    pub fn start_copy(parent: &Path, from: &Nginx) -> Nginx {
        let server = Nginx::start(parent);
        let status = Command::new("cp").arg("-a").arg(format!("{}/.", from.storage().display())).arg(server.storage()).status().unwrap();
        assert!(status.success(), "copying the cache's storage failed");
        server
    }

    /// Starts nginx in a temporary folder under `parent`; waits until it accepts connections.
    pub fn start(parent: &Path) -> Nginx {
        let nginx = executable();
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new().prefix("nginx-").tempdir_in(parent).expect("temp dir");
            let port = free_port();
            let root = dir.path().join("root");
            let storage = root.join("cache");
            std::fs::create_dir_all(&storage).unwrap();
            std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
            let d = dir.path().display();
            let config = format!(
                r#"daemon off;
# One process, which dies with the tests (a master's workers would outlive a killed test run).
# It writes the files as whoever runs the tests; with a master process started as root, the
# workers would run as `nobody` and need `user root;` to write into a temporary root.
master_process off;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    client_max_body_size 0;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /cache/ {{
            dav_methods PUT DELETE;
            create_full_put_path on;
        }}
        location /error/ {{
            return 500;
        }}
        location /slow/ {{
            alias {storage}/;
            limit_rate 4k;
        }}
        location /private/ {{
            if ($http_authorization != "Bearer {TOKEN}") {{
                return 401;
            }}
            alias {storage}/;
        }}
    }}
}}
"#,
                root = root.display(),
                storage = storage.display(),
            );
            let config_path = dir.path().join("nginx.conf");
            std::fs::write(&config_path, config).unwrap();
            let mut command = Command::new(&nginx);
            command
                .arg("-c")
                .arg(&config_path)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Bound to this process: a test run that is killed leaves no server behind.
            let child =
                exportctl::runtime::process::spawn_bound(command).unwrap_or_else(|e| panic!("cannot start {}: {e}", nginx.display()));
            let mut server = Nginx { child: Some(child), port, dir };
            if server.wait_ready() {
                return server;
            }
            // The port was taken in between, most likely: another one.
            server.stop();
        }
        panic!("nginx did not start; see the error.log of the last nginx-* folder under {}", parent.display());
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The base URL of a location: `url("cache")` → `http://127.0.0.1:PORT/cache`.
    pub fn url(&self, location: &str) -> String {
        format!("http://127.0.0.1:{}/{location}", self.port)
    }

    /// Where `/cache/` keeps its files (`ac/<key>`, `cas/<sha256>`).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("root").join("cache")
    }

    /// The server's error log (for failure messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Stops the server (its master and worker): connections are refused from then on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM is nginx's fast shutdown; the master stops its worker before exiting.
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
