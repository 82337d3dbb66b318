//! The process's memory, as Linux reports it: what it holds now and at its
//! peak (for `/metrics` and the end-of-run report), and what the machine or
//! its cgroup allows (for default table limits).

use std::fs;

/// Resident memory now, in bytes.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// The most resident memory the process has held, in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Memory the process may use: the cgroup's limit if one is set (a
/// container), else the machine's.
pub fn available_bytes() -> Option<u64> {
    let machine = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| kib_field(&t, "MemTotal:"))
        .map(|k| k * 1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| fs::read_to_string(p).ok())
    .find_map(|t| t.trim().parse::<u64>().ok());
    match (machine, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

fn status_kib(field: &str) -> Option<u64> {
    kib_field(&fs::read_to_string("/proc/self/status").ok()?, field)
}

/// `Field:   1234 kB` from a /proc file.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let rss = resident_bytes().unwrap();
        let peak = peak_resident_bytes().unwrap();
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        assert!(available_bytes().unwrap() > rss);
        assert_eq!(kib_field("MemTotal:  2048 kB\n", "MemTotal:"), Some(2048));
    }
}
