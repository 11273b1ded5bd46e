//! The echo app of the L4 tests (`mesh-testapp serve` / `send`), shared by their modules.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_testbed::Pod;

/// How long one `send` may run in all (its own timeout is 5 s).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the echo server on 8080 (with a banner naming the pod) inside `pod`.
pub fn serve(pod: &Pod) -> mesh_testbed::Process {
    let mut p = pod
        .spawn(
            mesh_testbed::bin_path("mesh-testapp"),
            &["serve", "--port", "8080", "--banner"],
        )
        .expect("start echo server");
    p.wait_for_output("listening on", Duration::from_secs(10))
        .expect("echo server ready");
    p
}

/// Sends `data` from `pod` to `to`; Ok(reply) or Err(stderr).
pub fn send(pod: &Pod, to: SocketAddr, data: &str) -> Result<String, String> {
    let to = to.to_string();
    let out = pod
        .netns
        .run_timeout(
            mesh_testbed::bin_path("mesh-testapp"),
            &[
                "send",
                "--to",
                to.as_str(),
                "--data",
                data,
                "--timeout-ms",
                "5000",
            ],
            SEND_TIMEOUT,
        )
        .expect("run mesh-testapp send");
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(out.stderr)
    }
}

/// Holds a TCP connection from `pod` to `to` open (bash's `/dev/tcp`) until the process is dropped.
pub fn hold_connection(pod: &Pod, to: SocketAddr) -> mesh_testbed::Process {
    let script = format!("exec 3<>/dev/tcp/{}/{}; sleep 60", to.ip(), to.port());
    pod.netns
        .spawn("held-connection", "bash", &["-c", script.as_str()])
        .expect("start the held connection")
}

/// `ss -tniH state established <filter>` inside `pod`'s namespace.
pub fn established(pod: &Pod, filter: &[&str]) -> String {
    let out = pod
        .netns
        .command("ss")
        .args(["-tniH", "state", "established"])
        .args(filter)
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`established`] as soon as it shows a connection; `None` if none came within 10 s.
pub fn wait_established(pod: &Pod, filter: &[&str]) -> Option<String> {
    (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            established(pod, filter)
        })
        .find(|t| !t.is_empty())
}
