//! The figures of a boot, their medians, and the report table with the
//! design's targets.

use anyhow::{bail, Result};
use std::time::Duration;

/// Boot times at most this fraction of Debian's.
pub const TARGET_TIME_RATIO: f64 = 0.5;
/// The system part under this many MiB.
pub const TARGET_SYSTEM_MIB: f64 = 40.0;
/// The whole system with an idle User Docker under this many MiB.
pub const TARGET_WITH_DOCKER_MIB: f64 = 128.0;

/// What one boot measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// QEMU start to the first successful `ssh true`.
    pub ssh_ready: Duration,
    /// QEMU start to the first successful `docker run`.
    pub docker_ready: Duration,
    /// Used memory with User Docker idle.
    pub mem_with_docker_kib: u64,
    /// Used memory after User Docker was stopped.
    pub mem_system_kib: u64,
    /// Where the system part's used memory is.
    pub system_parts: Parts,
}

/// Where used memory (MemTotal - MemAvailable) is, from /proc/meminfo.
/// The four parts add up to nearly all of it (the rest: vmalloc, per-CPU
/// and other kernel allocations that meminfo does not list apart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    /// Free and reclaimable memory that the kernel does not count as
    /// available: its watermarks (`vm.min_free_kbytes` and the zones'
    /// reserves), which it keeps free for itself.
    pub held_back_kib: u64,
    /// Processes' anonymous memory (AnonPages).
    pub anon_kib: u64,
    /// tmpfs, shared memory and the initramfs (Shmem).
    pub shmem_kib: u64,
    /// Unreclaimable slab, kernel stacks and page tables.
    pub kernel_kib: u64,
}

impl Figures {
    /// One line for the progress log.
    pub fn summary(&self) -> String {
        format!(
            "SSH {:.1} s, docker run {:.1} s, memory {:.1} MiB with User Docker, {:.1} MiB system",
            self.ssh_ready.as_secs_f64(),
            self.docker_ready.as_secs_f64(),
            mib(self.mem_with_docker_kib),
            mib(self.mem_system_kib)
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The lines of /proc/meminfo the benchmark uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meminfo {
    pub total_kib: u64,
    pub available_kib: u64,
    pub free_kib: u64,
    /// Active(file) + Inactive(file): the page cache that can be dropped.
    pub file_kib: u64,
    pub slab_reclaimable_kib: u64,
    pub slab_unreclaimable_kib: u64,
    pub anon_kib: u64,
    pub shmem_kib: u64,
    pub kernel_stack_kib: u64,
    pub page_tables_kib: u64,
}

impl Meminfo {
    /// Reads `MemTotal`, `MemAvailable` and the fields of [`Parts`] (all in
    /// kB, which the kernel means as KiB).
    pub fn parse(text: &str) -> Result<Self> {
        let field = |name: &str| -> Result<u64> {
            let Some(line) = text.lines().find(|l| l.split(':').next() == Some(name)) else {
                bail!("no {name} line");
            };
            let mut words = line.split_whitespace().skip(1);
            let (Some(value), unit) = (words.next(), words.next()) else {
                bail!("{name} has no value: {line:?}");
            };
            if unit != Some("kB") {
                bail!("{name} is not in kB: {line:?}");
            }
            value
                .parse()
                .map_err(|e| anyhow::anyhow!("{name} value {value:?} is not a number: {e}"))
        };
        let m = Meminfo {
            total_kib: field("MemTotal")?,
            available_kib: field("MemAvailable")?,
            free_kib: field("MemFree")?,
            file_kib: field("Active(file)")? + field("Inactive(file)")?,
            slab_reclaimable_kib: field("SReclaimable")?,
            slab_unreclaimable_kib: field("SUnreclaim")?,
            anon_kib: field("AnonPages")?,
            shmem_kib: field("Shmem")?,
            kernel_stack_kib: field("KernelStack")?,
            page_tables_kib: field("PageTables")?,
        };
        if m.available_kib > m.total_kib {
            bail!(
                "MemAvailable ({} kB) exceeds MemTotal ({} kB)",
                m.available_kib,
                m.total_kib
            );
        }
        Ok(m)
    }

    /// MemTotal - MemAvailable.
    pub fn used_kib(&self) -> u64 {
        self.total_kib - self.available_kib
    }

    /// Where [`Meminfo::used_kib`] is.
    pub fn parts(&self) -> Parts {
        let unused = self.free_kib + self.file_kib + self.slab_reclaimable_kib;
        Parts {
            held_back_kib: unused.saturating_sub(self.available_kib),
            anon_kib: self.anon_kib,
            shmem_kib: self.shmem_kib,
            kernel_kib: self.slab_unreclaimable_kib + self.kernel_stack_kib + self.page_tables_kib,
        }
    }
}

/// The median of each figure separately (the mean of the middle two for an
/// even count); `None` without figures.
pub fn median(runs: &[Figures]) -> Option<Figures> {
    if runs.is_empty() {
        return None;
    }
    fn mid<T: Copy + Ord>(mut v: Vec<T>, mean: impl Fn(T, T) -> T) -> T {
        v.sort();
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            mean(v[n / 2 - 1], v[n / 2])
        }
    }
    let dur = |f: fn(&Figures) -> Duration| mid(runs.iter().map(f).collect(), |a, b| (a + b) / 2);
    let kib = |f: fn(&Figures) -> u64| mid(runs.iter().map(f).collect(), |a, b| (a + b) / 2);
    Some(Figures {
        ssh_ready: dur(|f| f.ssh_ready),
        docker_ready: dur(|f| f.docker_ready),
        mem_with_docker_kib: kib(|f| f.mem_with_docker_kib),
        mem_system_kib: kib(|f| f.mem_system_kib),
        system_parts: Parts {
            held_back_kib: kib(|f| f.system_parts.held_back_kib),
            anon_kib: kib(|f| f.system_parts.anon_kib),
            shmem_kib: kib(|f| f.system_parts.shmem_kib),
            kernel_kib: kib(|f| f.system_parts.kernel_kib),
        },
    })
}

/// Whether a target is met, or why it cannot be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    NotMeasured,
    /// A part of a figure: no target of its own.
    Part,
}

impl Verdict {
    fn from_bool(ok: bool) -> Self {
        if ok {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT MET",
            Verdict::NotMeasured => "not measured",
            Verdict::Part => "",
        }
    }
}

/// OxOS / Debian, when both are there and Debian's is not zero.
pub fn ratio(oxos: Option<f64>, debian: Option<f64>) -> Option<f64> {
    match (oxos, debian) {
        (Some(o), Some(d)) if d > 0.0 => Some(o / d),
        _ => None,
    }
}

/// A time target: OxOS at most [`TARGET_TIME_RATIO`] of Debian.
pub fn time_verdict(ratio: Option<f64>) -> Verdict {
    ratio.map_or(Verdict::NotMeasured, |r| {
        Verdict::from_bool(r <= TARGET_TIME_RATIO)
    })
}

/// A memory target: OxOS under `limit_mib`.
pub fn memory_verdict(oxos_kib: Option<u64>, limit_mib: f64) -> Verdict {
    oxos_kib.map_or(Verdict::NotMeasured, |k| {
        Verdict::from_bool(mib(k) < limit_mib)
    })
}

/// The report: one row per figure with OxOS, Debian, the ratio, the target
/// and the verdict, then where the system part's memory is (rows without a
/// target). A machine that was not measured shows `-`.
pub fn table(oxos: Option<&Figures>, debian: Option<&Figures>) -> String {
    struct Row {
        name: &'static str,
        oxos: Option<f64>,
        debian: Option<f64>,
        unit: &'static str,
        target: String,
        verdict: Verdict,
    }
    let secs = |f: Option<&Figures>, g: fn(&Figures) -> Duration| f.map(|f| g(f).as_secs_f64());
    let kib = |f: Option<&Figures>, g: fn(&Figures) -> u64| f.map(g);
    let time_row = |name, g: fn(&Figures) -> Duration| {
        let (o, d) = (secs(oxos, g), secs(debian, g));
        Row {
            name,
            oxos: o,
            debian: d,
            unit: "s",
            target: format!("<= {TARGET_TIME_RATIO:.2} x Debian"),
            verdict: time_verdict(ratio(o, d)),
        }
    };
    // A memory figure, with its limit; a part of one has none.
    let mem_row = |name, g: fn(&Figures) -> u64, limit: Option<f64>| {
        let (o, d) = (kib(oxos, g), kib(debian, g));
        Row {
            name,
            oxos: o.map(mib),
            debian: d.map(mib),
            unit: "MiB",
            target: limit.map_or(String::new(), |l| format!("< {l:.0} MiB")),
            verdict: limit.map_or(Verdict::Part, |l| memory_verdict(o, l)),
        }
    };
    let rows = [
        time_row("time to SSH ready", |f| f.ssh_ready),
        time_row("time to docker run ready", |f| f.docker_ready),
        mem_row(
            "memory used, system part",
            |f| f.mem_system_kib,
            Some(TARGET_SYSTEM_MIB),
        ),
        mem_row(
            "memory used, with idle User Docker",
            |f| f.mem_with_docker_kib,
            Some(TARGET_WITH_DOCKER_MIB),
        ),
        mem_row(
            "system part: held back by kernel",
            |f| f.system_parts.held_back_kib,
            None,
        ),
        mem_row(
            "system part: processes (anon)",
            |f| f.system_parts.anon_kib,
            None,
        ),
        mem_row(
            "system part: shmem, tmpfs, initrd",
            |f| f.system_parts.shmem_kib,
            None,
        ),
        mem_row(
            "system part: kernel (slab etc.)",
            |f| f.system_parts.kernel_kib,
            None,
        ),
    ];
    let value =
        |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.1} {unit}"));
    let mut out = format!(
        "{:<36} {:>12} {:>12} {:>12}  {:<20} {}\n",
        "figure", "OxOS", "Debian", "OxOS/Debian", "target", "result"
    );
    for r in rows {
        let line = format!(
            "{:<36} {:>12} {:>12} {:>12}  {:<20} {}",
            r.name,
            value(r.oxos, r.unit),
            value(r.debian, r.unit),
            ratio(r.oxos, r.debian).map_or("-".to_string(), |x| format!("{x:.2}")),
            r.target,
            r.verdict.text()
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The other fields a reading needs, after MemTotal and MemAvailable.
    const REST: &str = "MemFree: 700000 kB\nActive(file): 60000 kB\n\
                        Inactive(file): 40000 kB\nSReclaimable: 10000 kB\n\
                        SUnreclaim: 20000 kB\nAnonPages: 90000 kB\nShmem: 16000 kB\n\
                        KernelStack: 2000 kB\nPageTables: 3000 kB\n";

    fn meminfo(total: &str, available: &str) -> String {
        format!("MemTotal: {total}\nMemAvailable: {available}\n{REST}")
    }

    fn figures(ssh: u64, docker: u64, with: u64, system: u64) -> Figures {
        Figures {
            ssh_ready: Duration::from_secs(ssh),
            docker_ready: Duration::from_secs(docker),
            mem_with_docker_kib: with,
            mem_system_kib: system,
            system_parts: Parts {
                held_back_kib: system / 2,
                anon_kib: system / 4,
                shmem_kib: 0,
                kernel_kib: system / 4,
            },
        }
    }

    #[test]
    fn used_memory_is_total_minus_available_and_is_broken_down() {
        let m = Meminfo::parse(&meminfo("1000000 kB", "750000 kB")).unwrap();
        assert_eq!(m.total_kib, 1_000_000);
        assert_eq!(m.used_kib(), 250_000);
        let p = m.parts();
        // 700000 free + 100000 file + 10000 reclaimable slab, of which
        // 750000 counted available: 60000 held back.
        assert_eq!(p.held_back_kib, 60_000);
        assert_eq!(p.anon_kib, 90_000);
        assert_eq!(p.shmem_kib, 16_000);
        assert_eq!(p.kernel_kib, 25_000);
    }

    #[test]
    fn meminfo_without_the_fields_or_with_odd_units_is_an_error() {
        let e = Meminfo::parse("MemTotal: 100 kB\n").unwrap_err();
        assert!(e.to_string().contains("no MemAvailable line"), "{e}");
        let e = Meminfo::parse("MemTotal: 100 kB\nMemAvailable: 5 kB\n").unwrap_err();
        assert!(e.to_string().contains("no MemFree line"), "{e}");
        assert!(Meminfo::parse(&meminfo("100 MB", "5 kB")).is_err());
        assert!(Meminfo::parse(&meminfo("x kB", "5 kB")).is_err());
        assert!(Meminfo::parse(&meminfo("1 kB", "5 kB")).is_err());
        // A field whose name only starts like the wanted one is not it.
        let renamed = meminfo("1 kB", "0 kB").replace("MemTotal:", "MemTotalX:");
        assert!(Meminfo::parse(&renamed).is_err());
    }

    #[test]
    fn median_takes_each_figure_separately() {
        assert_eq!(median(&[]), None);
        let m = median(&[
            figures(10, 30, 100, 50),
            figures(30, 10, 300, 70),
            figures(20, 20, 200, 60),
        ])
        .unwrap();
        assert_eq!(m, figures(20, 20, 200, 60));
        let m = median(&[figures(10, 10, 100, 50), figures(20, 30, 200, 60)]).unwrap();
        assert_eq!(m, figures(15, 20, 150, 55));
    }

    #[test]
    fn targets_hold_at_half_of_debian_and_under_the_memory_limits() {
        assert_eq!(time_verdict(ratio(Some(5.0), Some(10.0))), Verdict::Met);
        assert_eq!(time_verdict(ratio(Some(5.1), Some(10.0))), Verdict::NotMet);
        assert_eq!(time_verdict(ratio(None, Some(10.0))), Verdict::NotMeasured);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(memory_verdict(Some(39 * 1024), 40.0), Verdict::Met);
        assert_eq!(memory_verdict(Some(40 * 1024), 40.0), Verdict::NotMet);
        assert_eq!(memory_verdict(None, 40.0), Verdict::NotMeasured);
    }

    #[test]
    fn table_shows_both_machines_the_ratio_and_the_verdicts() {
        let oxos = figures(20, 40, 100 * 1024, 30 * 1024);
        let debian = figures(100, 160, 300 * 1024, 200 * 1024);
        let t = table(Some(&oxos), Some(&debian));
        let line = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        let ssh = line("time to SSH ready");
        assert!(ssh.contains("20.0 s") && ssh.contains("100.0 s"), "{ssh}");
        assert!(ssh.contains("0.20") && ssh.ends_with("met"), "{ssh}");
        assert!(line("time to docker run ready").contains("0.25"));
        let system = line("memory used, system part");
        assert!(
            system.contains("30.0 MiB") && system.contains("< 40 MiB"),
            "{system}"
        );
        assert!(system.ends_with(" met"));
        assert!(line("memory used, with idle User Docker").ends_with(" met"));
        let held = line("system part: held back by kernel");
        assert!(
            held.contains("15.0 MiB") && held.contains("100.0 MiB"),
            "{held}"
        );
        assert!(!held.contains("met") && !held.contains("< "), "{held}");
        let slow = figures(60, 40, 200 * 1024, 50 * 1024);
        let t = table(Some(&slow), Some(&debian));
        assert_eq!(t.matches("NOT MET").count(), 3, "{t}");
    }

    #[test]
    fn table_without_oxos_says_not_measured() {
        let debian = figures(100, 160, 300 * 1024, 200 * 1024);
        let t = table(None, Some(&debian));
        assert_eq!(t.matches("not measured").count(), 4, "{t}");
        assert!(t.contains("100.0 s"));
        assert!(!t.contains(" met\n"));
    }
}
