//! The only module that touches the kernel: runs `iptables-restore`, `iptables`,
//! `iptables-save`, `nft` and `conntrack` as child processes.
//!
//! Every command can be prefixed (e.g. `ip netns exec <ns>`) so that tests program a
//! network namespace of their own; in production the prefix is empty and the commands
//! act on the namespace the proxy runs in.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::iptables::{jumps, CANARY_CHAIN};
use crate::model::Protocol;

/// A command that could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The program could not be started or its input not written.
    #[error("running {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs the kernel-programming commands, optionally inside another namespace.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    prefix: Vec<String>,
}

/// Seconds iptables waits for the xtables lock (kube-proxy uses 5).
const XTABLES_WAIT: &str = "5";

impl Runner {
    /// Runs commands as they are, in the current network namespace.
    pub fn local() -> Runner {
        Runner::default()
    }

    /// Runs every command behind `prefix`, e.g. `["ip", "netns", "exec", "ns1"]`.
    pub fn with_prefix(prefix: Vec<String>) -> Runner {
        Runner { prefix }
    }

    /// Runs `program args...` with `input` on stdin and collects its output.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Output, ApplyError> {
        let mut argv: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        argv.push(program);
        argv.extend_from_slice(args);
        let cmd_line = argv.join(" ");
        let spawn_err = |source| ApplyError::Spawn {
            cmd: cmd_line.clone(),
            source,
        };
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            match stdin.write_all(data.as_bytes()).await {
                // The program stopped reading (it failed early): its status says why.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.map_err(spawn_err)?,
            }
            // Dropping stdin closes the pipe so the program sees end of input.
        }
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
        .and_then(|o| {
            if o.success {
                Ok(o)
            } else {
                Err(ApplyError::Failed {
                    cmd: cmd_line.clone(),
                    status: out.status,
                    stderr: o.stderr.trim().to_string(),
                })
            }
        })
    }

    /// Runs a command whose failure is an answer (e.g. `iptables -C`), not an error.
    async fn check(&self, program: &str, args: &[&str]) -> Result<bool, ApplyError> {
        match self.run(program, args, None).await {
            Ok(_) => Ok(true),
            Err(ApplyError::Failed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `iptables-restore --noflush --counters`, as kube-proxy applies its rules.
    pub async fn iptables_restore(&self, input: &str) -> Result<(), ApplyError> {
        self.run(
            "iptables-restore",
            &["-w", XTABLES_WAIT, "--noflush", "--counters"],
            Some(input),
        )
        .await
        .map(|_| ())
    }

    /// Creates the canary chains and the jumps from the built-in chains (inserted first,
    /// only when missing). Needs the target chains to exist: call after a full restore.
    pub async fn ensure_base_rules(&self) -> Result<(), ApplyError> {
        for table in ["mangle", "nat", "filter"] {
            if !self.chain_exists(table, CANARY_CHAIN).await? {
                self.run(
                    "iptables",
                    &["-w", XTABLES_WAIT, "-t", table, "-N", CANARY_CHAIN],
                    None,
                )
                .await?;
            }
        }
        for j in jumps() {
            let args: Vec<&str> = j.args.iter().map(String::as_str).collect();
            let mut check = vec!["-w", XTABLES_WAIT, "-t", j.table, "-C", j.from];
            check.extend_from_slice(&args);
            if !self.check("iptables", &check).await? {
                let mut insert = vec!["-w", XTABLES_WAIT, "-t", j.table, "-I", j.from];
                insert.extend_from_slice(&args);
                self.run("iptables", &insert, None).await?;
            }
        }
        Ok(())
    }

    /// Whether `chain` exists in `table`.
    pub async fn chain_exists(&self, table: &str, chain: &str) -> Result<bool, ApplyError> {
        self.check(
            "iptables",
            &["-w", XTABLES_WAIT, "-t", table, "-n", "-L", chain],
        )
        .await
    }

    /// Whether all three canary chains are still there (someone flushing the tables
    /// removes them, and then everything must be rewritten).
    pub async fn canaries_present(&self) -> Result<bool, ApplyError> {
        for table in ["mangle", "nat", "filter"] {
            if !self.chain_exists(table, CANARY_CHAIN).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `iptables-save -t <table>` (optionally with counters).
    pub async fn iptables_save(&self, table: &str, counters: bool) -> Result<String, ApplyError> {
        let mut args = vec!["-t", table];
        if counters {
            args.push("-c");
        }
        Ok(self.run("iptables-save", &args, None).await?.stdout)
    }

    /// Names of the chains in the nat table.
    pub async fn nat_chains(&self) -> Result<BTreeSet<String>, ApplyError> {
        let saved = self.iptables_save("nat", false).await?;
        Ok(saved
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// Applies an nft script as one transaction.
    pub async fn nft_apply(&self, script: &str) -> Result<(), ApplyError> {
        self.run("nft", &["-f", "-"], Some(script))
            .await
            .map(|_| ())
    }

    /// Deletes conntrack entries of `protocol` to `orig_dst` (if given) that were
    /// DNATed to `dnat` (if given). "No entries" is not an error.
    pub async fn conntrack_delete(
        &self,
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
        match self.run("conntrack", &args, None).await {
            Ok(_) => Ok(()),
            // conntrack exits 1 when nothing matched.
            Err(ApplyError::Failed { stderr, .. }) if stderr.contains("0 flow entries") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
