//! What `loadgen floor` reads about processes, from `/proc` (Linux): CPU time, resident memory,
//! and the pids of the database servers on this machine; and the server child processes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux the kernel
/// ABI supports outside a few exotic architectures.
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of process `pid` so far (all its threads), or `None` if it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_of_stat(&stat)
}

/// Fields 14 and 15 (`utime`, `stime`) of a `/proc/<pid>/stat` line; the command name (field 2)
/// is in parentheses and may hold spaces, so fields are counted after its closing parenthesis.
fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / TICKS_PER_SEC,
    ))
}

/// Resident set size of process `pid` in bytes (`VmRSS`), or `None` if it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The pids of processes whose command name (`/proc/<pid>/comm`) is `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// CPU time of a set of processes, read together.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    /// Every measured process: a label and its pids.
    pub groups: Vec<(String, Vec<u32>)>,
}

impl CpuMeter {
    /// The CPU time of each group so far (a vanished pid counts zero).
    pub fn read(&self) -> Vec<Duration> {
        self.groups
            .iter()
            .map(|(_, pids)| pids.iter().filter_map(|&p| cpu_time(p)).sum())
            .collect()
    }
}

/// A server process `loadgen floor` started: it serves until its stdin closes.
pub struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its pid.
    pub pid: u32,
    /// What it printed after `READY `.
    pub ready: serde_json::Value,
}

impl ServerChild {
    /// Runs `exe args…` and waits (up to `patience`) for its `READY <json>` line.
    pub async fn start(exe: &Path, args: &[String], patience: Duration) -> anyhow::Result<Self> {
        Self::start_with_env(exe, args, &[], patience).await
    }

    /// Like [`ServerChild::start`], with `env` added to the child's environment.
    pub async fn start_with_env(
        exe: &Path,
        args: &[String],
        env: &[(&str, &str)],
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {} {}: {e}", exe.display(), args.join(" ")))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("{} exited at once", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(patience, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(json) = line.strip_prefix("READY ") {
                    return Ok(serde_json::from_str::<serde_json::Value>(json)?);
                }
            }
            anyhow::bail!("exited before it was ready")
        })
        .await
        .map_err(|_| anyhow::anyhow!("not ready after {patience:?}"))?
        .map_err(|e| anyhow::anyhow!("{} {}: {e}", exe.display(), args.join(" ")))?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerChild {
            child,
            stdin,
            pid,
            ready,
        })
    }

    /// A string field of the ready line.
    pub fn field(&self, name: &str) -> anyhow::Result<String> {
        self.ready
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("ready line has no `{name}`: {}", self.ready))
    }

    /// Closes its stdin and waits (up to 30 s) for it to clean up and exit.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let line = "42 (tokio runtime) S 1 42 42 0 -1 4194560 500 0 0 0 250 130 0 0 20 0 9 0 \
                    100 2000000 900 18446744073709551615";
        assert_eq!(cpu_time_of_stat(line), Some(Duration::from_millis(3_800)));
        assert_eq!(cpu_time_of_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_resident_set() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(rss_bytes(me).unwrap() > 1024 * 1024);
        assert!(cpu_time(u32::MAX).is_none());
    }
}
