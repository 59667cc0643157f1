//! The `update` binary as a child process: found beside this one and copied, run to its
//! exit while its peak RSS and CPU time are read from `/proc`, and its phases read from
//! its log.

use super::rebuild::{Files, Phases};
use crate::common::{cpu_secs, unique, vm_hwm_kb};
use anyhow::{Context, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How an `update` process ended.
pub(super) struct Exit {
    pub(super) status: ExitStatus,
    /// Wall time from spawning it to its exit.
    pub(super) secs: f64,
    /// Peak RSS (VmHWM), MiB.
    pub(super) rss_mib: f64,
    /// User + system CPU time, seconds.
    pub(super) cpu_secs: f64,
    /// Wall-clock times it started and ended.
    pub(super) started: SystemTime,
    pub(super) ended: SystemTime,
}

/// Run `update -c <handler> -n <task> --config <config>` to its exit, watching its
/// peak RSS and CPU time in `/proc` every 100 ms.
pub(super) async fn run_update(bin: &Path, files: &Files, task: &str) -> anyhow::Result<Exit> {
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&files.handler)
        .arg("-n")
        .arg(task)
        .arg("--config")
        .arg(&files.config)
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&files.stdout)?)
        .stderr(std::fs::File::create(&files.log)?);
    let started = SystemTime::now();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().to_string();
    let mut waiter = tokio::task::spawn_blocking(move || {
        let status = child.wait();
        (status, Instant::now(), SystemTime::now())
    });
    let mut peak_kb = 0u64;
    let mut cpu = 0f64;
    let (status, end, ended) = loop {
        if let Some(kb) = vm_hwm_kb(&pid) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(c) = cpu_secs(&pid) {
            cpu = cpu.max(c);
        }
        tokio::select! {
            done = &mut waiter => break done?,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    Ok(Exit {
        status: status?,
        secs: (end - start).as_secs_f64(),
        rss_mib: peak_kb as f64 / 1024.0,
        cpu_secs: cpu,
        started,
        ended,
    })
}

/// The run's phases from its JSON log lines' timestamps.
pub(super) fn phases(log: &str, started: SystemTime, ended: SystemTime) -> anyhow::Result<Phases> {
    let at = |message: &str| -> anyhow::Result<f64> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v.get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.starts_with(message))
            })
            .and_then(|v| v.get("timestamp")?.as_str().and_then(rfc3339_secs))
            .with_context(|| format!("no `{message}` line with a timestamp in update's log"))
    };
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let generation = at("new generation")?;
    let loaded = at("load complete")?;
    Ok(Phases {
        setup: generation - secs(started),
        load: loaded - generation,
        finish: secs(ended) - loaded,
    })
}

/// Seconds since the epoch of a UTC RFC 3339 timestamp (`2026-01-02T03:04:05.678901Z`).
fn rfc3339_secs(t: &str) -> Option<f64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time.splitn(3, ':');
    let (hh, mm) = (
        h.next()?.parse::<f64>().ok()?,
        h.next()?.parse::<f64>().ok()?,
    );
    let ss = h.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// The `update` binary built beside this one (`scripts/bench` builds both).
pub(super) fn update_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("update");
    ensure!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release -p mee-update` (scripts/bench does)",
        bin.display()
    );
    Ok(bin)
}

/// A copy of a binary in the temporary directory, deleted on drop.
pub(super) struct BinCopy {
    pub(super) path: PathBuf,
}

impl BinCopy {
    pub(super) fn of(bin: &Path) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(unique("mee_bench_update_bin"));
        std::fs::copy(bin, &path)
            .with_context(|| format!("copying {} to {}", bin.display(), path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for BinCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339_secs;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_secs("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(rfc3339_secs("2024-02-29T12:00:00Z"), Some(1_709_208_000.0));
        assert_eq!(rfc3339_secs("2024-02-29 12:00:00"), None);
    }
}
