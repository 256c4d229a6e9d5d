//! Child processes and what /proc says about them: resident memory, CPU time, machine load.
//!
//! Every child is registered so that it is stopped whatever happens: when its guard drops (also
//! while unwinding from a panic), on SIGINT/SIGTERM of the bench, at the watchdog's deadline,
//! and, should the bench itself be killed, by the kernel (`PR_SET_PDEATHSIG`).

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A running child; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn(mut command: Command) -> std::io::Result<Proc> {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn()?;
        lock().push(child.id());
        Ok(Proc { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id();
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        lock().retain(|p| *p != pid);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Stops every registered child at once (signal handler and watchdog paths), with their
/// children (nginx workers).
pub fn kill_all() {
    let pids = lock().clone();
    for pid in &pids {
        for child in children(*pid) {
            signal(child, libc::SIGKILL);
        }
        signal(*pid, libc::SIGKILL);
    }
}

/// Raises RLIMIT_NOFILE as far as allowed (children inherit it); returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let want = libc::rlimit {
            rlim_cur: nr_open,
            rlim_max: nr_open.max(lim.rlim_max),
        };
        // Raising the hard limit needs CAP_SYS_RESOURCE; without it, go up to the hard limit.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// The direct children of `pid` (nginx's workers).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| stat_fields(*p).is_some_and(|f| f.get(1) == Some(&pid.to_string())))
        .collect()
}

/// The fields of /proc/PID/stat after the command name: [state, ppid, ...].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    // Fields 14 and 15 of stat; indices 11 and 12 after the command name.
    let ticks: u64 = stat_fields(pid)
        .map(|f| {
            f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Jiffies of the whole machine since boot (/proc/stat), to tell how loaded a run was.
#[derive(Clone, Copy, Default)]
pub struct Jiffies {
    /// Not idle, including time the hypervisor took (steal).
    pub busy: u64,
    pub total: u64,
    /// Taken by the hypervisor for other guests while this one had work: no process here ran.
    pub steal: u64,
}

pub fn machine_jiffies() -> Jiffies {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Jiffies {
        busy: total - at(3) - at(4),
        total,
        steal: at(7),
    }
}

/// A free port on 127.0.0.1 (for nginx, which cannot listen on port 0 and report it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Waits until something accepts on `port`.
pub async fn wait_listening(port: u16, proc: &mut Proc) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if !proc.alive() {
            return Err(std::io::Error::other("the process exited at start"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(std::io::Error::other(format!("nothing listens on {port}")))
}
