//! A pod's sandbox as a container runtime makes it: a fresh network namespace (recorded in
//! `state.json` before it exists), wired by the node's real CNI chain, and the containers'
//! `command` + `args` as processes inside it (`ip netns exec`, so `/etc/netns/<netns>/` files
//! such as `resolv.conf` are bind-mounted), supervised per `restartPolicy`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::cni::{self, PodArgs};
use super::network::{node_ip, node_netns};
use super::objects::Key;
use super::runtime::{Ctx, PodRun};
use super::state::ClusterState;
use super::{LocalError, io, network, sys};

/// Longest wait for a container to exit on SIGTERM (a pod's terminationGracePeriodSeconds is
/// capped at this, so `delete` stays quick).
const MAX_GRACE: Duration = Duration::from_secs(10);
/// Grace when the pod does not say.
const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// First restart delay; doubles per restart up to [`MAX_BACKOFF`] (like kubelet's back-off).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One container's process.
#[derive(Debug)]
pub struct Container {
    /// Container name.
    pub name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    workdir: String,
    child: Option<Child>,
    /// Times restarted.
    pub restarts: u32,
    /// Exit code of the last run (signals as 128 + n).
    pub last_exit: Option<i32>,
    /// When to start again (after an exit that the restart policy restarts).
    next_start: Option<Instant>,
}

/// A running pod.
#[derive(Debug)]
pub struct Sandbox {
    /// What hooks see.
    pub run: PodRun,
    /// CNI ADD's result (for DEL).
    pub cni_result: Value,
    /// Containers.
    pub containers: Vec<Container>,
    /// `Always`, `OnFailure` or `Never`.
    pub restart_policy: String,
    /// When the sandbox was made (RFC 3339).
    pub start_time: String,
    /// The pod's log file.
    pub log: PathBuf,
    grace: Duration,
}

/// The log file of pod `namespace/name`.
pub fn log_path(ctx: &Ctx, namespace: &str, name: &str) -> PathBuf {
    ctx.dir
        .join("logs")
        .join(format!("pod-{namespace}-{name}.log"))
}

fn args_of(pod: &Value, key: &Key) -> PodArgs {
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    PodArgs {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        container_id: format!("meshctl-{uid}"),
        uid,
    }
}

fn record_netns(ctx: &Ctx, netns: &str, add: bool) -> Result<(), LocalError> {
    let Some(mut state) = ClusterState::load(&ctx.dir)? else {
        return Ok(());
    };
    state.netns.retain(|n| n != netns);
    if add {
        state.netns.push(netns.to_owned());
    }
    state.save(&ctx.dir)?;
    Ok(())
}

/// Makes the sandbox of scheduled `pod` on node `node`: netns, CNI ADD, then (after `ready`,
/// the hooks' `sandbox_ready`) the containers. On failure everything made is removed again.
pub fn create(
    ctx: &Ctx,
    pod: &Value,
    node: u8,
    ready: &mut dyn FnMut(&PodRun) -> Result<(), String>,
) -> Result<Sandbox, LocalError> {
    let key = Key::of(pod);
    let netns = ctx.pod_netns(&key.namespace, &key.name);
    let args = args_of(pod, &key);
    if sys::netns_list().contains(&netns) {
        // A leftover of a crashed runtime: start clean.
        sys::destroy_netns(&netns)?;
    }
    network::create_netns(&netns, &mut |n| record_netns(ctx, n, true))?;
    let node_ns = node_netns(&ctx.id, node);
    let made = cni::invoke(&ctx.dir, node, &node_ns, "ADD", &netns, &args, None).and_then(|r| {
        let ip = cni::result_ip(&r).ok_or_else(|| {
            io("find the pod address in the CNI result")(std::io::Error::other(r.to_string()))
        })?;
        Ok((r, ip))
    });
    let (cni_result, ip) = match made {
        Ok(x) => x,
        Err(e) => {
            let _ = cni::invoke(&ctx.dir, node, &node_ns, "DEL", &netns, &args, None);
            let _ = remove_netns(ctx, &netns);
            return Err(e);
        }
    };
    let spec = &pod["spec"];
    let grace = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .map_or(DEFAULT_GRACE, Duration::from_secs)
        .min(MAX_GRACE);
    let mut sb = Sandbox {
        run: PodRun {
            key: key.clone(),
            uid: args.uid.clone(),
            node,
            netns,
            ip,
            pod: pod.clone(),
            running: false,
        },
        cni_result,
        containers: Vec::new(),
        restart_policy: spec["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_owned(),
        start_time: super::apply::timestamp(),
        log: log_path(ctx, &key.namespace, &key.name),
        grace,
    };
    sb.containers = containers(ctx, pod, &sb.run);
    if let Err(e) = ready(&sb.run) {
        let _ = destroy(ctx, &mut sb);
        return Err(io("prepare the pod (runtime hook)")(std::io::Error::other(
            e,
        )));
    }
    let _ = std::fs::write(&sb.log, "");
    sb.start_due();
    Ok(sb)
}

/// The environment of the first container of stored pod `pod` (what `exec` runs with), when
/// it has a node and an address.
pub fn exec_env(ctx: &Ctx, pod: &Value) -> Option<Vec<(String, String)>> {
    let key = Key::of(pod);
    let run = PodRun {
        netns: ctx.pod_netns(&key.namespace, &key.name),
        uid: pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        node: super::controllers::node_number(pod["spec"]["nodeName"].as_str()?)?,
        ip: pod["status"]["podIP"].as_str()?.parse().ok()?,
        key,
        pod: pod.clone(),
        running: true,
    };
    containers(ctx, pod, &run).into_iter().next().map(|c| c.env)
}

/// The containers of `pod` with their environment (DESIGN.md 7).
fn containers(ctx: &Ctx, pod: &Value, run: &PodRun) -> Vec<Container> {
    let spec = &pod["spec"];
    let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
    let node = super::network::node_name(run.node);
    let base = [
        ("PATH", ctx.path_env.clone()),
        ("POD_NAME", run.key.name.clone()),
        ("POD_NAMESPACE", run.key.namespace.clone()),
        ("POD_IP", run.ip.to_string()),
        ("SERVICE_ACCOUNT", sa.to_owned()),
        ("NODE_NAME", node.clone()),
    ];
    let field = |path: &str| -> Option<String> {
        Some(match path {
            "metadata.name" => run.key.name.clone(),
            "metadata.namespace" => run.key.namespace.clone(),
            "metadata.uid" => run.uid.clone(),
            "status.podIP" => run.ip.to_string(),
            "spec.nodeName" => node.clone(),
            "spec.serviceAccountName" => sa.to_owned(),
            "status.hostIP" => node_ip(run.node).to_string(),
            _ => return None,
        })
    };
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut env: Vec<(String, String)> = base
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().unwrap_or_default().to_owned();
                let value = e["value"].as_str().map(str::to_owned).or_else(|| {
                    e.pointer("/valueFrom/fieldRef/fieldPath")
                        .and_then(Value::as_str)
                        .and_then(field)
                });
                if let Some(v) = value {
                    env.retain(|(k, _)| *k != name);
                    env.push((name, v));
                }
            }
            let mut argv = list(&c["command"]);
            argv.extend(list(&c["args"]));
            Container {
                name: c["name"].as_str().unwrap_or("main").to_owned(),
                argv,
                env,
                workdir: c["workingDir"].as_str().unwrap_or("/").to_owned(),
                child: None,
                restarts: 0,
                last_exit: None,
                next_start: Some(Instant::now()),
            }
        })
        .collect()
}

impl Sandbox {
    /// Starts the containers whose start time has come.
    fn start_due(&mut self) {
        let now = Instant::now();
        for c in &mut self.containers {
            if c.child.is_none() && c.next_start.is_some_and(|t| t <= now) {
                c.next_start = None;
                match spawn(&self.run.netns, c, &self.log) {
                    Ok(child) => {
                        super::runtime::log(format_args!(
                            "pod {} container {} started (pid {})",
                            self.run.key,
                            c.name,
                            child.id()
                        ));
                        c.child = Some(child);
                    }
                    Err(e) => {
                        super::runtime::log(format_args!(
                            "pod {} container {} cannot start: {e}",
                            self.run.key, c.name
                        ));
                        append_log(
                            &self.log,
                            &format!("meshctl: cannot start {}: {e}\n", c.argv.join(" ")),
                        );
                        c.last_exit = Some(127);
                        schedule_restart(c, &self.restart_policy);
                    }
                }
            }
        }
        self.run.running = self.containers.iter().any(|c| c.child.is_some());
    }

    /// Reaps exited containers, restarts them per the restart policy; call every tick.
    pub fn supervise(&mut self) {
        for c in &mut self.containers {
            let Some(child) = c.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(-1);
                super::runtime::log(format_args!(
                    "pod {} container {} exited with {code}",
                    self.run.key, c.name
                ));
                c.child = None;
                c.last_exit = Some(code);
                schedule_restart(c, &self.restart_policy);
            }
        }
        self.start_due();
    }

    /// `Running`, `Succeeded` or `Failed` (Kubernetes' pod phases once a sandbox exists).
    pub fn phase(&self) -> &'static str {
        let waiting = |c: &Container| c.child.is_some() || c.next_start.is_some();
        if self.containers.iter().any(waiting) {
            "Running"
        } else if self.containers.iter().all(|c| c.last_exit == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        }
    }

    /// The pod's status as the runtime reports it (`ready` from the readiness decision).
    pub fn status(&self, ready: bool) -> Value {
        let tf = |b: bool| if b { "True" } else { "False" };
        let statuses: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                let state = match (&c.child, c.last_exit) {
                    (Some(_), _) => json!({"running": {}}),
                    (None, Some(code)) if c.next_start.is_none() => {
                        json!({"terminated": {"exitCode": code}})
                    }
                    _ => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                };
                json!({
                    "name": c.name, "image": "", "imageID": "", "ready": ready && c.child.is_some(),
                    "restartCount": c.restarts, "started": c.child.is_some(), "state": state,
                })
            })
            .collect();
        json!({
            "phase": self.phase(),
            "podIP": self.run.ip.to_string(),
            "podIPs": [{"ip": self.run.ip.to_string()}],
            "hostIP": node_ip(self.run.node).to_string(),
            "startTime": self.start_time,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": tf(ready)},
                {"type": "ContainersReady", "status": tf(ready)},
            ],
            "containerStatuses": statuses,
        })
    }
}

fn schedule_restart(c: &mut Container, policy: &str) {
    let restart = match policy {
        "Never" => false,
        "OnFailure" => c.last_exit != Some(0),
        _ => true,
    };
    if restart {
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << c.restarts.min(6))
            .min(MAX_BACKOFF);
        c.restarts += 1;
        c.next_start = Some(Instant::now() + backoff);
    }
}

fn append_log(log: &PathBuf, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn spawn(netns: &str, c: &Container, log: &PathBuf) -> Result<Child, std::io::Error> {
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)?;
    let err = out.try_clone()?;
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(&c.argv)
        .env_clear()
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&c.workdir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
}

/// Stops the containers (SIGTERM to each process group, SIGKILL after the grace period), runs
/// CNI DEL and removes the netns (and its `/etc/netns` files) and its record.
pub fn destroy(ctx: &Ctx, sb: &mut Sandbox) -> Result<(), LocalError> {
    let groups: Vec<i32> = sb
        .containers
        .iter()
        .filter_map(|c| c.child.as_ref().and_then(|ch| i32::try_from(ch.id()).ok()))
        .collect();
    for g in &groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGTERM);
    }
    let deadline = Instant::now() + sb.grace;
    while Instant::now() < deadline
        && sb.containers.iter_mut().any(|c| {
            c.child
                .as_mut()
                .is_some_and(|ch| matches!(ch.try_wait(), Ok(None)))
        })
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in &mut sb.containers {
        if let Some(mut ch) = c.child.take() {
            if let Ok(g) = i32::try_from(ch.id()) {
                let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
            }
            let _ = ch.wait();
        }
        c.next_start = None;
    }
    sb.run.running = false;
    let args = args_of(&sb.run.pod, &sb.run.key);
    let node_ns = node_netns(&ctx.id, sb.run.node);
    let del = cni::invoke(
        &ctx.dir,
        sb.run.node,
        &node_ns,
        "DEL",
        &sb.run.netns,
        &args,
        Some(&sb.cni_result),
    );
    if let Err(e) = &del {
        super::runtime::log(format_args!("pod {} CNI DEL failed: {e}", sb.run.key));
    }
    remove_netns(ctx, &sb.run.netns)
}

fn remove_netns(ctx: &Ctx, netns: &str) -> Result<(), LocalError> {
    if sys::netns_list().iter().any(|n| n == netns) {
        sys::destroy_netns(netns)?;
    }
    let etc = std::path::Path::new("/etc/netns").join(netns);
    if etc.exists() {
        std::fs::remove_dir_all(&etc).map_err(io(format!("remove {}", etc.display())))?;
    }
    record_netns(ctx, netns, false)
}

#[cfg(test)]
mod tests;
