//! The host's network as a text snapshot, for tests that change it (a local cluster's host
//! link, route and NAT rules) and must leave it as they found it.

use std::process::Command;

/// The host's network as `ip route` (v4 and v6), `ip addr`, `iptables-save` and
/// `nft list ruleset` show it, and `net.ipv4.ip_forward`, without what changes by itself
/// (packet counters, dates, address lifetimes, duplicate address detection).
pub fn snapshot() -> String {
    let mut out = String::new();
    for (program, args) in [
        ("ip", &["-4", "route"][..]),
        ("ip", &["-6", "route"][..]),
        ("ip", &["addr"][..]),
        ("iptables-save", &[][..]),
        ("nft", &["list", "ruleset"][..]),
    ] {
        let o = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            o.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.push_str(&format!("== {program} {}\n", args.join(" ")));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if line.starts_with('#') || line.contains("_lft") {
                continue;
            }
            // An IPv6 address's duplicate detection ends by itself.
            let line = line.replace(" tentative", "");
            // `:INPUT ACCEPT [12:345]`: chain counters.
            let line = match line.rfind(" [") {
                Some(i) if line.starts_with(':') => &line[..i],
                _ => &line,
            };
            out.push_str(&without_nft_counters(line));
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "ip_forward={}",
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default()
    ));
    out
}

/// `counter packets 12 bytes 345` (an nft rule's counter, which moves with any traffic,
/// another cluster's too) as `counter`.
fn without_nft_counters(line: &str) -> String {
    let mut out = Vec::new();
    let mut words = line.split(' ').peekable();
    while let Some(w) = words.next() {
        out.push(w);
        if w == "counter" && words.peek() == Some(&"packets") {
            // packets N bytes M
            for _ in 0..4 {
                words.next();
            }
        }
    }
    out.join(" ")
}

/// Fails with the lines that differ when the host's network changed between two
/// [`snapshot`]s; `what` says what should have left it unchanged.
#[track_caller]
pub fn assert_unchanged(before: &str, after: &str, what: &str) {
    let gone: Vec<&str> = before.lines().filter(|l| !after.contains(l)).collect();
    let added: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
    assert!(
        before == after,
        "{what} changed the host's network:\nremoved: {gone:#?}\nadded: {added:#?}\nnow:\n{after}"
    );
}
