//! Systems under test as child processes: each in a process group of its own, so that stopping
//! it reaches every process a wrapper script started.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a system may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts `command` as the leader of a new process group.
pub fn spawn_group(command: &mut Command) -> std::io::Result<Child> {
    command.process_group(0).spawn()
}

/// Sends `signal` (e.g. `-TERM`) to the process group `child` leads.
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

/// Stops the group `child` leads: SIGTERM, then SIGKILL after [`STOP_GRACE`]; returns the
/// leader's exit status. `who` names the system in the message logged when SIGKILL is needed.
pub fn stop(child: &mut Child, who: &str) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        // The leader is gone; the rest of its group may not be.
        signal_group(child, "-KILL");
        return Some(status);
    }
    signal_group(child, "-TERM");
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            signal_group(child, "-KILL");
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{who}: the system did not stop within {STOP_GRACE:?} of SIGTERM: SIGKILL");
    signal_group(child, "-KILL");
    child.wait().ok()
}

/// A system started with [`spawn_group`], stopped with [`stop`] when dropped.
#[derive(Debug)]
pub struct System(pub Child);

impl System {
    /// Starts `command` in a process group of its own.
    pub fn spawn(command: &mut Command) -> std::io::Result<System> {
        spawn_group(command).map(System)
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        stop(&mut self.0, "system");
    }
}

/// Removes what a faustus system keeps on local disk for application `app_id` in faustus'
/// default state directory (`<temp dir>/faustus/<app_id>`: its local checkpoints), and says
/// whether there was anything. Every benchmark run has an application id of its own, so these
/// files are never read again; at 10^7 keys they are hundreds of megabytes.
pub fn remove_local_state(app_id: &str) -> std::io::Result<bool> {
    let dir = std::env::temp_dir().join("faustus").join(app_id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
