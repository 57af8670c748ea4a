//! The command lines the proxy runs, spelled once: `iptables-restore`, `iptables`,
//! `iptables-save`, `nft` and `conntrack`, each a function over a [`Runner`] (which
//! spawns them, or records them in unit tests). The backends ([`crate::backend`]) and
//! the engine ([`crate::sync`]) reach the kernel only through these.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::iptables::{jumps, CANARY_CHAIN};
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

/// Creates the canary chains and the jumps from the built-in chains (inserted first,
/// only when missing). Needs the target chains to exist: call after a full restore.
pub async fn ensure_base_rules(runner: &dyn Runner) -> Result<(), ApplyError> {
    for table in ["mangle", "nat", "filter"] {
        if !chain_exists(runner, table, CANARY_CHAIN).await? {
            runner
                .run(
                    "iptables",
                    &["-w", XTABLES_WAIT, "-t", table, "-N", CANARY_CHAIN],
                    None,
                )
                .await?;
        }
    }
    for j in jumps() {
        let args: Vec<&str> = j.args.iter().map(String::as_str).collect();
        let mut probe = vec!["-w", XTABLES_WAIT, "-t", j.table, "-C", j.from];
        probe.extend_from_slice(&args);
        if !check(runner, "iptables", &probe).await? {
            let mut insert = vec!["-w", XTABLES_WAIT, "-t", j.table, "-I", j.from];
            insert.extend_from_slice(&args);
            runner.run("iptables", &insert, None).await?;
        }
    }
    Ok(())
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

/// Names of the chains in the nat table.
pub async fn nat_chains(runner: &dyn Runner) -> Result<BTreeSet<String>, ApplyError> {
    let saved = iptables_save(runner, "nat", false).await?;
    Ok(saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
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
