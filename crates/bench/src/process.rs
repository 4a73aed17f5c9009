//! The emulator as a separate process: spawned from its release binary (pinned to one core with
//! `taskset`, which execs, so the child's pid is the emulator's), polled until the metadata URL
//! answers 200, and read through `/proc` (RSS, CPU time). Linux only, like the figures.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::BenchError;

/// Linux's `USER_HZ`: the unit of utime and stime in `/proc/*/stat` (100 on every Linux ABI
/// this runs on; reading `sysconf(_SC_CLK_TCK)` would need `unsafe`).
const TICKS_PER_SECOND: f64 = 100.0;

/// How to start the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorCommand {
    /// The `scalekit-emulator` binary (a release build).
    pub binary: PathBuf,
    /// The environment file.
    pub config: PathBuf,
    /// The core to pin it to with `taskset -c`, or `None` to leave it unpinned.
    pub cpu: Option<usize>,
}

/// A running emulator, killed on drop.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    address: SocketAddr,
}

impl EmulatorCommand {
    /// Spawns the emulator on a free loopback port with `state_dir` (or in memory).
    pub fn spawn(&self, state_dir: Option<&Path>) -> Result<Emulator, BenchError> {
        let address = free_loopback_address()?;
        let mut command = match self.cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.args(["-c", &cpu.to_string()]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", &address.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match state_dir {
            Some(state_dir) => command.arg("--state-dir").arg(state_dir),
            // In memory: a new key, and no key file in the working directory's `.testbed/`.
            None => command.arg("--fresh-signing-key"),
        };
        let child = command.spawn().map_err(BenchError::io(format!(
            "cannot start {}",
            self.binary.display()
        )))?;
        Ok(Emulator { child, address })
    }
}

impl Emulator {
    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `GET path` until it answers 200 (the connection refused until the port is bound),
    /// failing after `timeout` or if the process exits.
    pub fn wait_for_200(&mut self, path: &str, timeout: Duration) -> Result<(), BenchError> {
        let begin = Instant::now();
        loop {
            if get_status(self.address, path) == Some(200) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Timeout(format!(
                    "the emulator exited ({status}) before answering"
                )));
            }
            if begin.elapsed() > timeout {
                return Err(BenchError::Timeout(format!(
                    "the emulator did not answer 200 on {path} within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Resident memory in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> Result<u64, BenchError> {
        rss_bytes(self.pid())
    }

    /// User plus system CPU time so far.
    pub fn cpu_time(&self) -> Result<Duration, BenchError> {
        cpu_time(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Only this child, by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the emulator and times the first 200 on `path`, from just before the spawn.
pub fn cold_start(
    command: &EmulatorCommand,
    state_dir: Option<&Path>,
    path: &str,
) -> Result<(Duration, Emulator), BenchError> {
    let begin = Instant::now();
    let mut emulator = command.spawn(state_dir)?;
    emulator.wait_for_200(path, Duration::from_secs(20))?;
    Ok((begin.elapsed(), emulator))
}

/// A loopback port nobody listens on now (the emulator binds it a moment later).
fn free_loopback_address() -> Result<SocketAddr, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(BenchError::io("binding a port"))?;
    listener
        .local_addr()
        .map_err(BenchError::io("reading the bound port"))
}

/// The status of `GET path` on a fresh connection, or `None` if nothing answered.
fn get_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_nodelay(true).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    parse_status_line(&head)
}

fn parse_status_line(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).map_err(BenchError::io(format!("reading {path}")))?;
    parse_vm_rss(&status).ok_or_else(|| BenchError::Protocol {
        step: "rss",
        message: format!("no VmRSS in {path}"),
    })
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// The generator's own CPU time (all threads).
pub fn own_cpu_time() -> Result<Duration, BenchError> {
    cpu_time("/proc/self/stat")
}

/// utime + stime of a `/proc/*/stat` file.
fn cpu_time(path: &str) -> Result<Duration, BenchError> {
    let stat = std::fs::read_to_string(path).map_err(BenchError::io(format!("reading {path}")))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND))
        .ok_or_else(|| BenchError::Protocol {
            step: "cpu time",
            message: format!("cannot read utime and stime from {path}"),
        })
}

/// Fields 14 and 15 (utime, stime), counted after the command name, which may hold spaces.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so field N is at index N - 3.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// The cores this process may run on (`Cpus_allowed_list`), to show the pinning took.
pub fn own_allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .map(|list| list.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Pins this process (its threads started from now on inherit it) to `cpu` with `taskset -p`.
pub fn pin_self(cpu: usize) -> Result<(), BenchError> {
    let status = Command::new("taskset")
        .args([
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(BenchError::io("running taskset (util-linux)"))?;
    if status.success() {
        return Ok(());
    }
    Err(BenchError::Protocol {
        step: "pinning",
        message: format!("taskset -p -c {cpu} failed ({status})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\tscalekit-emul\nVmPeak:\t  20000 kB\nVmRSS:\t   9876 kB\nThreads:\t2\n";
        assert_eq!(parse_vm_rss(status), Some(9876 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (tokio rt (1)) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 2 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn the_status_line_gives_the_code() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.1 404"), Some(404));
        assert_eq!(parse_status_line(b"SSH-2.0-Open"), None);
    }

    #[test]
    fn this_process_can_read_its_own_cpu_time_and_cores() {
        assert!(own_cpu_time().is_ok());
        assert_ne!(own_allowed_cpus(), "unknown");
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
