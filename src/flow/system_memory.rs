//! The system's memory use, sampled: refusing new records when the machine
//! (or the process's cgroup) is short of memory, before the kernel's OOM
//! killer picks a victim. A background thread of the engine calls
//! [`SystemMemory::sample`] every 100 ms; the record path reads one atomic.
//!
//! Where the numbers come from: the cgroup v2 `memory.current` and
//! `memory.max` of the process's own cgroup (read from `/proc/self/cgroup`)
//! when that cgroup has a limit, else the cgroup v1 memory controller's
//! `memory.usage_in_bytes` and `memory.limit_in_bytes` when it has one,
//! else `/proc/meminfo` (`MemTotal - MemAvailable` over `MemTotal`). The paths are settings so that tests can
//! point them at files they write.

use std::path::{Path, PathBuf};

use crate::sync::atomic::{AtomicU32, Ordering};

/// Where the memory figures are read from (the real system by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySource {
    /// The cgroup v2 mount (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// The process's cgroup membership (`/proc/self/cgroup`).
    pub proc_self_cgroup: PathBuf,
    /// `/proc/meminfo`.
    pub meminfo: PathBuf,
}

impl Default for MemorySource {
    fn default() -> Self {
        MemorySource {
            cgroup_root: "/sys/fs/cgroup".into(),
            proc_self_cgroup: "/proc/self/cgroup".into(),
            meminfo: "/proc/meminfo".into(),
        }
    }
}

impl MemorySource {
    /// The fraction of memory in use: the cgroup's if it has a limit, else
    /// the machine's. `None` when neither can be read.
    pub fn used_fraction(&self) -> Option<f64> {
        let membership = std::fs::read_to_string(&self.proc_self_cgroup).unwrap_or_default();
        self.cgroup_v2(&membership)
            .or_else(|| self.cgroup_v1(&membership))
            .or_else(|| self.meminfo_fraction())
    }

    /// cgroup v2: the line `0::/path`; `memory.current` of `memory.max`.
    fn cgroup_v2(&self, membership: &str) -> Option<f64> {
        let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = self.cgroup_root.join(path.trim().trim_start_matches('/'));
        let max = read_trimmed(&dir.join("memory.max"))?;
        if max == "max" {
            return None;
        }
        let current = read_trimmed(&dir.join("memory.current"))?;
        fraction(&current, &max)
    }

    /// cgroup v1 (still common in containers): the line `N:memory:/path`;
    /// `memory.usage_in_bytes` of `memory.limit_in_bytes` under the
    /// `memory` controller's mount. "No limit" is a number near 2^63.
    fn cgroup_v1(&self, membership: &str) -> Option<f64> {
        let path = membership.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        })?;
        let dir = self
            .cgroup_root
            .join("memory")
            .join(path.trim().trim_start_matches('/'));
        let limit = read_trimmed(&dir.join("memory.limit_in_bytes"))?;
        if limit.parse::<u64>().ok()? >= 1 << 60 {
            return None;
        }
        let usage = read_trimmed(&dir.join("memory.usage_in_bytes"))?;
        fraction(&usage, &limit)
    }

    fn meminfo_fraction(&self) -> Option<f64> {
        let text = std::fs::read_to_string(&self.meminfo).ok()?;
        let field = |name: &str| -> Option<f64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        let total = field("MemTotal:")?;
        let available = field("MemAvailable:")?;
        (total > 0.0).then(|| ((total - available) / total).clamp(0.0, 1.0))
    }
}

fn fraction(used: &str, limit: &str) -> Option<f64> {
    let (used, limit): (f64, f64) = (used.parse().ok()?, limit.parse().ok()?);
    (limit > 0.0).then(|| used / limit)
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// The last sample and the threshold.
#[derive(Debug)]
pub struct SystemMemory {
    /// Memory in use, in thousandths, as last sampled (0 until the first
    /// sample, or when nothing could be read).
    used_permille: AtomicU32,
    limit_permille: u32,
    source: MemorySource,
}

impl SystemMemory {
    /// Refuses above `limit` (a fraction in (0, 1]); takes a first sample.
    pub fn new(limit: f64, source: MemorySource) -> SystemMemory {
        let s = SystemMemory {
            used_permille: AtomicU32::new(0),
            limit_permille: (limit * 1000.0).round() as u32,
            source,
        };
        s.sample();
        s
    }

    /// Reads the source once into the atomic. Unreadable figures count as
    /// no pressure: a missing file must not stop all telemetry.
    pub fn sample(&self) {
        let used = self
            .source
            .used_fraction()
            .map_or(0, |f| (f * 1000.0).round() as u32);
        // Relaxed: a lone value, read as a hint; a sample seen 100 ms late
        // changes nothing.
        self.used_permille.store(used, Ordering::Relaxed);
    }

    /// Whether memory use is over the threshold (as last sampled).
    #[inline]
    pub fn over(&self) -> bool {
        self.used_permille.load(Ordering::Relaxed) > self.limit_permille
    }

    /// The last sample, as a fraction.
    pub fn used(&self) -> f64 {
        self.used_permille.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("otlpflow-sysmem-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("cg/app.slice")).unwrap();
        d
    }

    #[test]
    fn the_cgroup_limit_wins_and_meminfo_is_the_fallback() {
        let d = dir("both");
        let src = MemorySource {
            cgroup_root: d.join("cg"),
            proc_self_cgroup: d.join("cgroup"),
            meminfo: d.join("meminfo"),
        };
        std::fs::write(
            &src.meminfo,
            "MemTotal:  1000 kB\nMemFree: 1 kB\nMemAvailable:   250 kB\n",
        )
        .unwrap();
        std::fs::write(&src.proc_self_cgroup, "0::/app.slice\n").unwrap();
        std::fs::write(d.join("cg/app.slice/memory.max"), "max\n").unwrap();
        std::fs::write(d.join("cg/app.slice/memory.current"), "900\n").unwrap();
        assert_eq!(src.used_fraction(), Some(0.75)); // no cgroup limit: meminfo
        std::fs::write(d.join("cg/app.slice/memory.max"), "1000\n").unwrap();
        assert_eq!(src.used_fraction(), Some(0.9)); // the cgroup's
        let s = SystemMemory::new(0.8, src.clone());
        assert!(s.over());
        std::fs::write(d.join("cg/app.slice/memory.current"), "500\n").unwrap();
        s.sample();
        assert!(!s.over());
        // Nothing readable: no pressure.
        // cgroup v1: the memory controller's line.
        std::fs::write(&src.proc_self_cgroup, "4:memory:/app.slice\n1:cpu:/\n").unwrap();
        std::fs::create_dir_all(d.join("cg/memory/app.slice")).unwrap();
        std::fs::write(
            d.join("cg/memory/app.slice/memory.limit_in_bytes"),
            "2000\n",
        )
        .unwrap();
        std::fs::write(
            d.join("cg/memory/app.slice/memory.usage_in_bytes"),
            "1700\n",
        )
        .unwrap();
        assert_eq!(src.used_fraction(), Some(0.85));
        std::fs::write(
            d.join("cg/memory/app.slice/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(src.used_fraction(), Some(0.75)); // unlimited: meminfo
        let none = SystemMemory::new(
            0.1,
            MemorySource {
                cgroup_root: d.join("nowhere"),
                proc_self_cgroup: d.join("nowhere"),
                meminfo: d.join("nowhere"),
            },
        );
        assert!(!none.over());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn this_machine_reports_a_fraction() {
        let f = MemorySource::default().used_fraction();
        if let Some(f) = f {
            assert!((0.0..=1.5).contains(&f), "{f}");
        }
    }
}
