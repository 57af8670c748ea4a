//! The command lines the proxy runs, spelled once: `iptables-restore`, `iptables`,
//! `iptables-save`, `nft` and `conntrack`, each a function over a [`Runner`] (which
//! spawns them, or records them in unit tests). The backends ([`crate::backend`]) and
//! the engine ([`crate::sync`]) reach the kernel only through these.

use std::net::Ipv4Addr;

use crate::iptables::CANARY_CHAIN;
use crate::model::Protocol;
use crate::runner::{ApplyError, Runner};

/// Seconds iptables waits for the xtables lock (kube-proxy uses 5).
const XTABLES_WAIT: &str = "5";

/// Runs a command whose failure is an answer (e.g. `iptables -C`), not an error.
async fn check(runner: &dyn Runner, program: &str, args: &[&str]) -> Result<bool, ApplyError> {
    match runner.run(program, args, None).await {
        Ok(_) => Ok(true),
        Err(ApplyError::Failed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `iptables-restore --noflush --counters`, as kube-proxy applies its rules.
pub async fn iptables_restore(runner: &dyn Runner, input: &str) -> Result<(), ApplyError> {
    runner
        .run(
            "iptables-restore",
            &["-w", XTABLES_WAIT, "--noflush", "--counters"],
            Some(input),
        )
        .await
        .map(|_| ())
}

/// Whether `chain` exists in `table`.
pub async fn chain_exists(
    runner: &dyn Runner,
    table: &str,
    chain: &str,
) -> Result<bool, ApplyError> {
    check(
        runner,
        "iptables",
        &["-w", XTABLES_WAIT, "-t", table, "-n", "-L", chain],
    )
    .await
}

/// Whether all three canary chains are still there (someone flushing the tables
/// removes them, and then everything must be rewritten).
pub async fn canaries_present(runner: &dyn Runner) -> Result<bool, ApplyError> {
    for table in ["mangle", "nat", "filter"] {
        if !chain_exists(runner, table, CANARY_CHAIN).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `iptables-save -t <table>` (optionally with counters).
pub async fn iptables_save(
    runner: &dyn Runner,
    table: &str,
    counters: bool,
) -> Result<String, ApplyError> {
    let mut args = vec!["-t", table];
    if counters {
        args.push("-c");
    }
    Ok(runner.run("iptables-save", &args, None).await?.stdout)
}

/// `iptables-save` of every table, as a full sync reads the kernel once.
pub async fn iptables_save_all(runner: &dyn Runner) -> Result<String, ApplyError> {
    Ok(runner.run("iptables-save", &[], None).await?.stdout)
}

/// Applies an nft script as one transaction.
pub async fn nft_apply(runner: &dyn Runner, script: &str) -> Result<(), ApplyError> {
    runner
        .run("nft", &["-f", "-"], Some(script))
        .await
        .map(|_| ())
}

/// Deletes conntrack entries of `protocol` to `orig_dst` (if given) that were
/// DNATed to `dnat` (if given). "No entries" is not an error.
pub async fn conntrack_delete(
    runner: &dyn Runner,
    protocol: Protocol,
    orig_dst: Option<Ipv4Addr>,
    orig_port: Option<u16>,
    dnat: Option<Ipv4Addr>,
) -> Result<(), ApplyError> {
    let (od, op, dn) = (
        orig_dst.map(|i| i.to_string()),
        orig_port.map(|p| p.to_string()),
        dnat.map(|i| i.to_string()),
    );
    let mut args = vec!["-D", "-p", protocol.lower()];
    if let Some(d) = &od {
        args.extend(["--orig-dst", d]);
    }
    if let Some(p) = &op {
        args.extend(["--orig-port-dst", p]);
    }
    if let Some(d) = &dn {
        args.extend(["--dst-nat", d]);
    }
    match runner.run("conntrack", &args, None).await {
        Ok(_) => Ok(()),
        // conntrack exits 1 when nothing matched.
        Err(ApplyError::Failed { stderr, .. }) if stderr.contains("0 flow entries") => Ok(()),
        Err(e) => Err(e),
    }
}
