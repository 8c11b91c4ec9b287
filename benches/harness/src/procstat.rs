//! CPU time and peak memory of a process and its descendants, from `/proc` (Linux).

use std::collections::HashMap;
use std::fs;

/// Resource use of a process tree at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// User + system CPU seconds of every live process of the tree, plus those of children
    /// they have reaped.
    pub cpu_s: f64,
    /// Sum over the live processes of the tree of their peak resident set (`VmHWM`), in MB.
    pub peak_rss_mb: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Parent pid and utime+stime+cutime+cstime ticks of `pid`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Some((ppid, ticks))
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `root` and its live descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((ppid, _)) = stat(pid) {
                    children.entry(ppid).or_default().push(pid);
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// The resource use of `root`'s process tree now (`None` once `root` is gone).
pub fn usage(root: u32, ticks_per_s: f64) -> Option<Usage> {
    stat(root)?;
    let mut u = Usage::default();
    for pid in tree(root) {
        if let Some((_, ticks)) = stat(pid) {
            u.cpu_s += ticks as f64 / ticks_per_s;
        }
        u.peak_rss_mb += vm_hwm_kb(pid).unwrap_or(0) as f64 / 1024.0;
    }
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process() {
        let u = usage(std::process::id(), clock_ticks()).expect("this process exists");
        assert!(u.peak_rss_mb > 0.0);
        assert!(u.cpu_s >= 0.0);
        assert!(usage(u32::MAX, 100.0).is_none());
    }
}
