//! Low-priority spinners, one per core: idle CPUs wake up slowly and make single-connection
//! latency swing 2-4x between runs, so every variant runs with the CPUs kept busy the same way.

use anyhow::Context;
use mesh_testbed::Process;

/// Spinning processes (scheduling policy `SCHED_IDLE`), stopped on drop.
#[derive(Debug)]
pub struct Spinners {
    _procs: Vec<Process>,
}

impl Spinners {
    /// Starts one spinner per available core.
    pub fn start() -> anyhow::Result<Spinners> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let procs = (0..cores)
            .map(|_| {
                // SCHED_IDLE, not a relative `nice`: the spinner must yield at once to anything
                // else (the measured processes, but also ksoftirqd) even when the harness itself
                // runs with a raised priority.
                let mut cmd = std::process::Command::new("chrt");
                cmd.args(["--idle", "0", "sh", "-c", "while :; do :; done"]);
                Process::start(cmd, "spinner").context("cannot start a CPU spinner (chrt, sh)")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Spinners { _procs: procs })
    }
}
