//! Run a service binary as a real process and watch its `/healthz` and `/metrics`.

use crate::unique_name;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A service process with its own config file, metrics port and stderr log file.
/// Killed on drop.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    /// The binary's file name, for messages.
    bin: String,
    pub metrics: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl ServiceProcess {
    /// Start `bin args... --config <file with config_toml> --metrics-listen <free port>`
    /// with extra environment variables `envs`; stderr goes to a file ([`Self::stderr`]).
    pub fn spawn(bin: &str, args: &[&str], config_toml: &str, envs: &[(&str, &str)]) -> Self {
        let name = unique_name("svc");
        let config = std::env::temp_dir().join(format!("{name}.toml"));
        let log = std::env::temp_dir().join(format!("{name}.log"));
        std::fs::write(&config, config_toml).expect("write test config");
        let stderr = std::fs::File::create(&log).expect("create log file");
        let metrics = free_port();
        let child = Command::new(bin)
            .args(args)
            .envs(envs.iter().copied())
            .stderr(stderr)
            .arg("--config")
            .arg(&config)
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let name = std::path::Path::new(bin).file_name();
        Self {
            child,
            bin: name.map_or(bin.into(), |n| n.to_string_lossy().into_owned()),
            metrics,
            config,
            log,
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last [`TAIL_LINES`] lines the process wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let all = self.stderr();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// GET `path` on the metrics endpoint: `(status, body)`, or `None` if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// Wait until `/healthz` answers 200. Panics with the last answer on timeout, or
    /// if the process exits first.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "service exited before it was healthy: {status}\n{}",
                    self.stderr()
                );
            }
            last = self.get("/healthz");
            if matches!(last, Some((200, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "not healthy within {timeout:?}; last /healthz answer: {last:?}\n{}",
            self.stderr()
        );
    }

    /// Wait for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < timeout, "still running after {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// SIGKILL (`kill -9`): no chance to flush or save anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.wait_exit(timeout)
    }
}

/// How much of a service's log a failure shows.
const TAIL_LINES: usize = 60;

impl Drop for ServiceProcess {
    /// Kills the process. When a test fails (the thread is panicking) the log is kept
    /// and its end printed, so that the failure can be diagnosed.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        if std::thread::panicking() {
            eprintln!(
                "--- {} (pid {}), whole log kept in {} ---\n{}",
                self.bin,
                self.child.id(),
                self.log.display(),
                self.stderr_tail()
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}
