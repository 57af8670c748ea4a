//! Other clients than kubectl against a real local cluster (`skiff up`): the official
//! Kubernetes Python client (from PyPI; `scripts/install-deps.sh` installs it) runs
//! `tests/clients/python_suite.py`, which covers what that client does differently from
//! kubectl (WebSocket exec with stdin in its own frames, port-forward, watch-list
//! bookmarks, server-side apply, metadata-only PATCH, eviction). kube-rs is exercised by
//! the crates' own tests. Needs root, as `cluster.rs`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_tools, text, Cluster, PAGE};

#[test]
#[ignore = "needs root"]
fn the_python_client_execs_forwards_watches_applies_and_evicts() {
    assert_tools();
    let has_client = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_client,
        "the Python kubernetes client is missing (scripts/install-deps.sh installs it)"
    );
    let c = Cluster::up("py", 2, &[]);
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_suite.py");
    let out = Command::new("timeout")
        .arg("300")
        .arg("python3")
        .arg(&suite)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("SUITE_NAMESPACE", format!("python-{}", std::process::id()))
        .env("SUITE_PAGE", PAGE)
        .output()
        .expect("running python3");
    let report = text(&out);
    assert!(out.status.success(), "the Python suite failed:\n{report}");
    for check in [
        "exec_with_stdin",
        "port_forward",
        "watch_with_bookmarks",
        "server_side_apply",
        "metadata_only_patch",
        "eviction",
    ] {
        assert!(report.contains(&format!("ok {check}\n")), "{report}");
    }
}
