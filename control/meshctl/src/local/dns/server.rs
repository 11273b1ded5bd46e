//! The cluster DNS process (`meshctl local dns --state DIR`, hidden, started by `up` in node-1's
//! netns and recorded in the state file), its records file and the pods' `resolv.conf`.
//!
//! The runtime writes the records to `<state>/dns/records.json` whenever services or pods
//! change ([`write_records`], atomically); the server re-reads the file when its modification
//! stamp changes (checked at least every [`RELOAD_CHECK`]) and keeps the last good records when
//! it cannot be read.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{DNS_ADDR, DOMAIN, Records, Zone, respond};

/// The line the server logs once it serves (`up` waits for it).
pub const SERVING: &str = "cluster DNS serving";
/// How often the server checks the records file (also the socket's read timeout).
pub const RELOAD_CHECK: Duration = Duration::from_millis(100);
/// Where `ip netns exec <netns>` finds files to bind over `/etc` (iproute2's convention).
pub const ETC_NETNS: &str = "/etc/netns";

/// Errors of the DNS process and its files.
#[derive(Debug, thiserror::Error)]
pub enum DnsServerError {
    /// The socket could not be bound.
    #[error(
        "cluster DNS cannot bind {0}: {1} (is it running in node-1's netns, and is another DNS server there?)"
    )]
    Bind(SocketAddr, std::io::Error),
    /// Receiving failed.
    #[error("cluster DNS on {0}: receive failed: {1}")]
    Recv(SocketAddr, std::io::Error),
    /// A file could not be written or removed.
    #[error("cannot {what} {path}: {source}")]
    File {
        /// What we tried.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The records file of state dir `dir`.
pub fn records_file(dir: &Path) -> PathBuf {
    dir.join("dns/records.json")
}

/// Writes `records` for the server (temporary file, then rename).
pub fn write_records(dir: &Path, records: &Records) -> Result<(), DnsServerError> {
    let path = records_file(dir);
    let file = |what| {
        let path = path.clone();
        move |source| DnsServerError::File { what, path, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(file("create the directory of"))?;
    }
    let text =
        serde_json::to_vec_pretty(records).map_err(|e| file("render")(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(file("write"))?;
    std::fs::rename(&tmp, &path).map_err(file("replace"))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Serves DNS on `listen` from the records of state dir `dir` until killed.
pub fn serve(dir: &Path, listen: SocketAddr) -> Result<(), DnsServerError> {
    let sock = UdpSocket::bind(listen).map_err(|e| DnsServerError::Bind(listen, e))?;
    sock.set_read_timeout(Some(RELOAD_CHECK))
        .map_err(|e| DnsServerError::Bind(listen, e))?;
    println!("{SERVING} {listen} (zone {DOMAIN})");
    let file = records_file(dir);
    let mut zone = Zone::default();
    let mut seen = None;
    let mut buf = [0u8; 1500];
    loop {
        let now = stamp(&file);
        if now != seen {
            match std::fs::read(&file).map(|b| serde_json::from_slice::<Records>(&b)) {
                Ok(Ok(records)) => {
                    zone = Zone::new(&records);
                    println!(
                        "loaded {} services from {}",
                        records.services.len(),
                        file.display()
                    );
                }
                Ok(Err(e)) => eprintln!(
                    "keeping the last records: {} is invalid: {e}",
                    file.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!(
                    "keeping the last records: cannot read {}: {e}",
                    file.display()
                ),
            }
            seen = now;
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(DnsServerError::Recv(listen, e)),
        };
        let client = match from.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        };
        if let Some(answer) = respond(&buf[..n], &zone, client) {
            // A client gone away is its problem, not the server's.
            let _ = sock.send_to(&answer, from);
        }
    }
}

/// The `resolv.conf` of a pod in namespace `ns`.
pub fn resolv_conf(ns: &str) -> String {
    format!(
        "# written by meshctl local for a pod of namespace {ns}\n\
         nameserver {DNS_ADDR}\n\
         search {ns}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\n\
         options ndots:5\n"
    )
}

/// The directory `ip netns exec <netns>` binds over `/etc`.
pub fn etc_netns_dir(netns: &str) -> PathBuf {
    Path::new(ETC_NETNS).join(netns)
}

/// Writes `/etc/netns/<netns>/resolv.conf` for a pod of namespace `ns`.
pub fn write_resolv_conf(netns: &str, ns: &str) -> Result<(), DnsServerError> {
    let dir = etc_netns_dir(netns);
    let path = dir.join("resolv.conf");
    let err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DnsServerError::File { what, path, source }
    };
    std::fs::create_dir_all(&dir).map_err(err("create", &dir))?;
    std::fs::write(&path, resolv_conf(ns)).map_err(err("write", &path))
}

/// Removes `/etc/netns/<netns>` (absent is fine).
pub fn remove_etc_netns(netns: &str) -> Result<(), DnsServerError> {
    let dir = etc_netns_dir(netns);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DnsServerError::File {
            what: "remove",
            path: dir,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Removes every `/etc/netns/<prefix>*` directory (`down`, also after a crash); returns them.
pub fn sweep_etc_netns(prefix: &str) -> Result<Vec<PathBuf>, DnsServerError> {
    let Ok(entries) = std::fs::read_dir(ETC_NETNS) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let name = entry.file_name().to_string_lossy().into_owned();
            remove_etc_netns(&name)?;
            removed.push(entry.path());
        }
    }
    // iproute2 made /etc/netns for us if it was missing; only an empty one goes.
    let _ = std::fs::remove_dir(ETC_NETNS);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_searches_the_pods_namespace_first_with_ndots_5() {
        let text = resolv_conf("shop");
        assert!(text.contains("nameserver 172.30.0.1\n"), "{text}");
        assert!(
            text.contains("search shop.svc.cluster.local svc.cluster.local cluster.local\n"),
            "{text}"
        );
        assert!(text.contains("options ndots:5"), "{text}");
    }

    #[test]
    fn the_server_answers_from_the_records_file_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        drop(sock);
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || serve(&d, addr));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let ask = |name: &str| -> Option<u8> {
            let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            super::super::push_name(&mut q, name);
            q.extend_from_slice(&[0, 1, 0, 1]);
            client.send_to(&q, addr).ok()?;
            let mut buf = [0u8; 512];
            let n = client.recv(&mut buf).ok()?;
            Some(buf[n - 1]) // last octet of the single answer, or of the SOA
        };
        let name = "web.shop.svc.cluster.local";
        // Until the records exist: NXDOMAIN (the SOA's last byte is its minimum, 5).
        let mut records = Records::default();
        records.services.push(super::super::ServiceRecord {
            namespace: "shop".into(),
            name: "web".into(),
            ips: vec!["10.255.0.7".parse().unwrap()],
        });
        let mut got = None;
        for _ in 0..50 {
            got = ask(name);
            if got.is_some() {
                break;
            }
        }
        assert_eq!(got, Some(5));
        write_records(dir.path(), &records).unwrap();
        let mut answer = None;
        for _ in 0..50 {
            answer = ask(name);
            if answer == Some(7) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(answer, Some(7), "reloaded");
    }
}
