use std::os::fd::AsFd;

use nix::sys::stat::fstat;

use super::*;

fn inode(ns: &Netns) -> (u64, u64) {
    let st = fstat(ns.as_fd()).expect("fstat of a netns fd");
    (st.st_dev, st.st_ino)
}

fn listed(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn create_unique_is_listed_and_deleted_on_drop() {
    let ns = NamedNetns::create_unique("mcni-t").unwrap();
    let name = ns.name().to_string();
    assert!(name.starts_with(&format!("mcni-t-{}-", std::process::id())));
    assert!(listed(&name), "{name} not in `ip netns list`");
    drop(ns);
    assert!(!listed(&name), "{name} still listed after drop");
}

#[test]
fn run_enters_the_namespace_on_another_thread_only() {
    let ns = NamedNetns::create_unique("mcni-t").unwrap();
    let before = inode(&Netns::current().unwrap());
    let inside = ns
        .netns()
        .run(|| inode(&Netns::current().unwrap()))
        .unwrap();
    assert_eq!(inside, inode(ns.netns()));
    assert_ne!(inside, before);
    assert_eq!(
        inode(&Netns::current().unwrap()),
        before,
        "caller thread moved"
    );
    // A fresh namespace has only `lo`.
    let ifaces = ns
        .netns()
        .run(|| {
            nix::net::if_::if_nameindex()
                .unwrap()
                .iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(ifaces, vec!["lo".to_string()]);
}

#[test]
fn open_named_and_pid_and_clone_refer_to_the_same_namespace() {
    let ns = NamedNetns::create_unique("mcni-t").unwrap();
    let by_name = Netns::open_named(ns.name()).unwrap();
    assert_eq!(inode(&by_name), inode(ns.netns()));
    assert_eq!(inode(&by_name.try_clone().unwrap()), inode(ns.netns()));
    let me = Netns::open_pid(std::process::id()).unwrap();
    // The main thread of this process is in the root test namespace, like the caller.
    assert_eq!(inode(&me), inode(&Netns::current().unwrap()));
}

#[test]
fn bad_names_and_missing_namespaces_are_errors() {
    assert!(matches!(
        Netns::open_named("../etc"),
        Err(NetnsError::InvalidName(_))
    ));
    let err = Netns::open_named("mcni-does-not-exist-xyz").unwrap_err();
    assert!(matches!(err, NetnsError::Open { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/var/run/netns/mcni-does-not-exist-xyz")
    );
}

#[test]
fn run_propagates_panics() {
    let ns = NamedNetns::create_unique("mcni-t").unwrap();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.netns().run(|| panic!("boom")).unwrap();
    }));
    assert!(res.is_err());
}
