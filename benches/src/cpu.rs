//! CPU time of a running process from `/proc/<pid>/stat` (user + system, all its threads,
//! exited ones included).

use std::time::Duration;

use anyhow::{Context, anyhow};

/// CPU time process `pid` has used so far.
pub fn used(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (has the process exited?)"))?;
    let ticks = parse_ticks(&text).with_context(|| format!("unexpected content in {path}"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

/// `utime + stime` (clock ticks) of a `/proc/<pid>/stat` line.
pub fn parse_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: count from its end.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("no `)` after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `rest` starts at field 3.
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("no field {n}"))?
            .parse()
            .with_context(|| format!("field {n} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we run on if that fails).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_ticks() {
        let stat = "1234 (way point) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_ticks(stat).expect("parses"), 300);
        assert!(parse_ticks("1234 no parens").is_err());
        assert!(parse_ticks("1 (x) S 1").is_err());
    }

    #[test]
    fn our_own_process_has_used_some_cpu() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(used(std::process::id()).expect("own stat") > Duration::ZERO);
    }
}
