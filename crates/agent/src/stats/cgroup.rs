//! Reading a container's or pod's cgroup and the node's `/proc` counters: cumulative CPU
//! time and memory, as cAdvisor reports them to the kubelet. Both cgroup layouts are
//! read: v1 (`cpuacct`, `memory` hierarchies, what runc uses on a hybrid host such as
//! this one) first, then v2 (the unified hierarchy). The parsers are pure.

use std::path::Path;

/// Memory of a cgroup (or the node), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Everything charged: anonymous memory and page cache.
    pub usage: u64,
    /// `usage` less the inactive file cache: what the kubelet's eviction and
    /// metrics-server count (cAdvisor's `working_set`).
    pub working_set: u64,
    /// Anonymous and swap-cache memory.
    pub rss: u64,
}

/// One reading of a cgroup's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Cumulative CPU time, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory now.
    pub memory: Memory,
}

/// `key value` lines (`memory.stat`, `cpu.stat`) → the value of `key`.
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A v1 memory cgroup's figures from `memory.usage_in_bytes` and `memory.stat`
/// (hierarchical `total_*` keys, as cAdvisor reads them).
pub fn memory_v1(usage_in_bytes: &str, stat: &str) -> Option<Memory> {
    let usage: u64 = usage_in_bytes.trim().parse().ok()?;
    let inactive = stat_value(stat, "total_inactive_file").unwrap_or(0);
    let rss = stat_value(stat, "total_rss").unwrap_or(0);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(inactive),
        rss,
    })
}

/// A v2 cgroup's memory from `memory.current` and `memory.stat`.
pub fn memory_v2(current: &str, stat: &str) -> Option<Memory> {
    let usage: u64 = current.trim().parse().ok()?;
    let inactive = stat_value(stat, "inactive_file").unwrap_or(0);
    let rss = stat_value(stat, "anon").unwrap_or(0);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(inactive),
        rss,
    })
}

/// A v1 `cpuacct.usage` (nanoseconds).
pub fn cpu_v1(usage: &str) -> Option<u64> {
    usage.trim().parse().ok()
}

/// A v2 `cpu.stat`'s `usage_usec`, in nanoseconds.
pub fn cpu_v2(stat: &str) -> Option<u64> {
    stat_value(stat, "usage_usec").map(|us| us.saturating_mul(1000))
}

/// Nanoseconds per `USER_HZ` tick of `/proc/stat` (100 Hz on every Linux ABI).
const NS_PER_TICK: u64 = 10_000_000;

/// The node's busy CPU time from `/proc/stat`'s `cpu` line: user, nice, system, irq,
/// softirq and steal (idle and iowait are not busy; guest time is already in user).
pub fn node_cpu(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    (!f.is_empty()).then_some(busy * NS_PER_TICK)
}

/// `/proc/meminfo` → (the node's memory, `MemTotal`): usage is what is not free, the
/// working set that less the inactive file cache (cAdvisor's root cgroup figures).
pub fn node_memory(meminfo: &str) -> Option<(Memory, u64)> {
    let kib = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == key)
                .then(|| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .flatten()
                .map(|n| n * 1024)
        })
    };
    let total = kib("MemTotal")?;
    let free = kib("MemFree")?;
    let usage = total.saturating_sub(free);
    let inactive = kib("Inactive(file)").unwrap_or(0);
    Some((
        Memory {
            usage,
            working_set: usage.saturating_sub(inactive),
            rss: kib("AnonPages").unwrap_or(0),
        },
        total,
    ))
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Reads the cgroup at `path` (runc's `cgroupsPath`, e.g. `/skiff/n1/pod<uid>/<id>`)
/// under `root` (`/sys/fs/cgroup`); None when it does not exist (any more).
pub fn read_cgroup(root: &Path, path: &str) -> Option<Counters> {
    let rel = path.trim_start_matches('/');
    let v1_cpu = root.join("cpuacct").join(rel);
    if v1_cpu.is_dir() {
        let cpu_ns = cpu_v1(&read(&v1_cpu.join("cpuacct.usage"))?)?;
        let mem = root.join("memory").join(rel);
        let memory = memory_v1(
            &read(&mem.join("memory.usage_in_bytes")).unwrap_or_default(),
            &read(&mem.join("memory.stat")).unwrap_or_default(),
        )
        .unwrap_or_default();
        return Some(Counters { cpu_ns, memory });
    }
    // v2: the unified hierarchy, mounted at the root or (hybrid) at `unified`.
    for base in [root.to_path_buf(), root.join("unified")] {
        let dir = base.join(rel);
        if let Some(cpu_ns) = read(&dir.join("cpu.stat")).and_then(|s| cpu_v2(&s)) {
            let memory = memory_v2(
                &read(&dir.join("memory.current")).unwrap_or_default(),
                &read(&dir.join("memory.stat")).unwrap_or_default(),
            )
            .unwrap_or_default();
            return Some(Counters { cpu_ns, memory });
        }
    }
    None
}

/// Reads the node's counters and its memory capacity from `/proc`.
pub fn read_node() -> Option<(Counters, u64)> {
    let cpu_ns = node_cpu(&read(Path::new("/proc/stat"))?)?;
    let (memory, total) = node_memory(&read(Path::new("/proc/meminfo"))?)?;
    Some((Counters { cpu_ns, memory }, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_subtracts_the_inactive_file_cache() {
        let stat = "cache 8192\nrss 4096\ninactive_file 10\ntotal_cache 819200\n\
                    total_rss 409600\ntotal_inactive_file 204800\n";
        assert_eq!(
            memory_v1("1228800\n", stat),
            Some(Memory {
                usage: 1_228_800,
                working_set: 1_024_000,
                rss: 409_600
            })
        );
        // More inactive cache than usage (racy reads) never goes below zero.
        assert_eq!(
            memory_v1("100", "total_inactive_file 200").map(|m| m.working_set),
            Some(0)
        );
        assert_eq!(memory_v1("", stat), None);
    }

    #[test]
    fn v2_memory_and_cpu() {
        let stat = "anon 4096\nfile 8192\ninactive_file 2048\nactive_file 6144\n";
        assert_eq!(
            memory_v2("12288\n", stat),
            Some(Memory {
                usage: 12_288,
                working_set: 10_240,
                rss: 4096
            })
        );
        let cpu = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(cpu_v2(cpu), Some(1_500_000));
        assert_eq!(cpu_v2("user_usec 1\n"), None);
        assert_eq!(cpu_v1("123456789\n"), Some(123_456_789));
    }

    #[test]
    fn node_cpu_counts_busy_ticks() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1\n";
        // user + nice + system + irq + softirq + steal = 161 ticks of 10 ms.
        assert_eq!(node_cpu(stat), Some(1_610_000_000));
        assert_eq!(node_cpu("intr 1\n"), None);
    }

    #[test]
    fn node_memory_from_meminfo() {
        let info = "MemTotal:        8000000 kB\nMemFree:         2000000 kB\n\
                    MemAvailable:    5000000 kB\nInactive(file):  1000000 kB\n\
                    AnonPages:        700000 kB\n";
        let (m, total) = node_memory(info).expect("meminfo");
        assert_eq!(total, 8_000_000 * 1024);
        assert_eq!(m.usage, 6_000_000 * 1024);
        assert_eq!(m.working_set, 5_000_000 * 1024);
        assert_eq!(m.rss, 700_000 * 1024);
    }

    #[test]
    fn reads_a_v1_and_a_v2_cgroup_tree() {
        let root = tempfile::tempdir().expect("tmp");
        let cpu = root.path().join("cpuacct/skiff/n1/podu/c1");
        let mem = root.path().join("memory/skiff/n1/podu/c1");
        std::fs::create_dir_all(&cpu).expect("mkdir");
        std::fs::create_dir_all(&mem).expect("mkdir");
        std::fs::write(cpu.join("cpuacct.usage"), "5000\n").expect("write");
        std::fs::write(mem.join("memory.usage_in_bytes"), "4096\n").expect("write");
        std::fs::write(mem.join("memory.stat"), "total_inactive_file 1024\n").expect("write");
        let c = read_cgroup(root.path(), "/skiff/n1/podu/c1").expect("v1");
        assert_eq!(c.cpu_ns, 5000);
        assert_eq!(c.memory.working_set, 3072);

        let v2 = root.path().join("unified/skiff/n2/podu/c1");
        std::fs::create_dir_all(&v2).expect("mkdir");
        std::fs::write(v2.join("cpu.stat"), "usage_usec 7\n").expect("write");
        std::fs::write(v2.join("memory.current"), "100\n").expect("write");
        let c = read_cgroup(root.path(), "/skiff/n2/podu/c1").expect("v2");
        assert_eq!(c.cpu_ns, 7000);
        assert_eq!(c.memory.working_set, 100);
        assert_eq!(read_cgroup(root.path(), "/skiff/gone"), None);
    }
}
