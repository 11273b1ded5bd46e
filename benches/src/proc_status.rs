//! Memory of a running process from `/proc/<pid>/status`.

use anyhow::{Context, anyhow};

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size since the process started (`VmHWM`, the high-water mark).
    pub peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of process `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (has the process exited?)"))?;
    parse(&text).with_context(|| format!("unexpected content in {path}"))
}

/// Parses the `VmRSS:` and `VmHWM:` lines of a `/proc/<pid>/status` text.
pub fn parse(status: &str) -> anyhow::Result<Memory> {
    Ok(Memory {
        rss_kib: field_kib(status, "VmRSS:")?,
        peak_kib: field_kib(status, "VmHWM:")?,
    })
}

fn field_kib(status: &str, name: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .ok_or_else(|| anyhow!("no {name} line"))?;
    let mut words = line[name.len()..].split_whitespace();
    let value = words
        .next()
        .ok_or_else(|| anyhow!("no value in {line:?}"))?;
    if words.next() != Some("kB") {
        return Err(anyhow!("{line:?} is not in kB"));
    }
    value
        .parse()
        .with_context(|| format!("bad number in {line:?}"))
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_high_water_mark() {
        let text =
            "Name:\tztunnel\nVmPeak:\t  600000 kB\nVmHWM:\t   36864 kB\nVmRSS:\t   14336 kB\n";
        let m = parse(text).expect("parses");
        assert_eq!(
            m,
            Memory {
                rss_kib: 14336,
                peak_kib: 36864
            }
        );
        assert_eq!(mib(m.rss_kib), 14.0);
        assert!(parse("Name:\tx\nVmRSS:\t12 kB\n").is_err());
        assert!(parse("VmRSS:\t12 MB\nVmHWM:\t13 kB\n").is_err());
    }

    #[test]
    fn reads_our_own_process() {
        let m = memory(std::process::id()).expect("own status");
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib, "{m:?}");
    }
}
