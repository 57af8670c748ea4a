//! What touches the kernel: the [`Runner`] trait runs one program with arguments and
//! input and returns its output. [`Exec`] spawns the program (in production, in the
//! network namespace the proxy runs in; in tests and benchmarks, behind a prefix such as
//! `ip netns exec <ns>`); the unit tests' `Recording` (as kube-proxy's
//! `iptablestest.NewFake()`) records each invocation instead and fails the ones it is
//! told to, so the sync logic is tested without root.
//!
//! Which programs are run with which arguments is spelled in [`crate::apply`].

use std::fmt;
use std::process::Stdio;

use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

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

/// Output of a command that exited with status 0.
#[derive(Debug, Default)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs the programs that program the kernel (`iptables-restore`, `nft`, `conntrack`...).
pub trait Runner: Send + Sync + fmt::Debug {
    /// Runs `program args...` with `stdin` as its input (none: no input) and collects its
    /// output; an exit status other than 0 is [`ApplyError::Failed`].
    fn run<'a>(
        &'a self,
        program: &'a str,
        args: &'a [&'a str],
        stdin: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Output, ApplyError>>;
}

/// The real runner: spawns each program as a child process, optionally behind a prefix.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    prefix: Vec<String>,
}

impl Exec {
    /// Runs commands as they are, in the current network namespace.
    pub fn local() -> Exec {
        Exec::default()
    }

    /// Runs every command behind `prefix`, e.g. `["ip", "netns", "exec", "ns1"]`.
    pub fn with_prefix(prefix: Vec<String>) -> Exec {
        Exec { prefix }
    }

    async fn exec(
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
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(ApplyError::Failed {
                cmd: cmd_line,
                status: out.status,
                stderr: stderr.trim().to_string(),
            });
        }
        Ok(Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        })
    }
}

impl Runner for Exec {
    fn run<'a>(
        &'a self,
        program: &'a str,
        args: &'a [&'a str],
        stdin: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Output, ApplyError>> {
        Box::pin(self.exec(program, args, stdin))
    }
}

#[cfg(test)]
pub use recording::{Call, Recording};

#[cfg(test)]
mod recording {
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::process::ExitStatusExt as _;
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;

    /// One recorded invocation.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Call {
        /// The program, e.g. `iptables-restore`.
        pub program: String,
        /// Its arguments.
        pub args: Vec<String>,
        /// What it was given on stdin.
        pub stdin: Option<String>,
    }

    impl Call {
        /// `program args...` as one line.
        pub fn line(&self) -> String {
            std::iter::once(self.program.as_str())
                .chain(self.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        }

        /// The input, or an empty string.
        pub fn input(&self) -> &str {
            self.stdin.as_deref().unwrap_or_default()
        }
    }

    #[derive(Debug, Default)]
    struct State {
        calls: Vec<Call>,
        /// Number of calls ever made (`calls` is emptied by `take`).
        count: usize,
        fail_at: BTreeSet<usize>,
        fail_when: Vec<String>,
        stdout: BTreeMap<String, String>,
        delay: Duration,
    }

    /// A fake kernel: records every invocation and answers with success and empty
    /// output, unless told otherwise. Nothing is run.
    #[derive(Debug)]
    pub struct Recording {
        state: Mutex<State>,
        /// Bumped on every call, for [`Recording::wait_until`].
        calls_made: watch::Sender<usize>,
    }

    impl Default for Recording {
        fn default() -> Recording {
            Recording {
                state: Mutex::default(),
                calls_made: watch::channel(0).0,
            }
        }
    }

    impl Recording {
        /// A runner that records everything and fails nothing.
        pub fn new() -> Recording {
            Recording::default()
        }

        /// Waits until the calls recorded since the last `take` satisfy `f`.
        pub async fn wait_until(&self, f: impl Fn(&[Call]) -> bool) {
            let mut rx = self.calls_made.subscribe();
            while !f(&self.state().calls) {
                // The sender lives in `self`: `changed` fails only if it was dropped.
                let _ = rx.changed().await;
            }
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Makes the `n`th call from now (0: the next one) exit with status 1.
        pub fn fail_call(&self, n: usize) {
            let mut s = self.state();
            let at = s.count + n;
            s.fail_at.insert(at);
        }

        /// Makes every call whose command line contains `text` exit with status 1 (e.g.
        /// `-L KUBE-PROXY-CANARY`: the chain is missing).
        pub fn fail_when(&self, text: &str) {
            self.state().fail_when.push(text.to_string());
        }

        /// Stops failing the calls [`Recording::fail_when`] named.
        pub fn heal(&self) {
            self.state().fail_when.clear();
        }

        /// What `program` prints on stdout from now on.
        pub fn stdout(&self, program: &str, text: &str) {
            self.state()
                .stdout
                .insert(program.to_string(), text.to_string());
        }

        /// Makes every call take `d` (of tokio's clock, so a test with a paused clock
        /// does not wait).
        pub fn delay(&self, d: Duration) {
            self.state().delay = d;
        }

        /// The calls recorded since the last `take`, forgetting them.
        pub fn take(&self) -> Vec<Call> {
            std::mem::take(&mut self.state().calls)
        }

        fn record(
            &self,
            program: &str,
            args: &[&str],
            stdin: Option<&str>,
        ) -> (Duration, Result<Output, ApplyError>) {
            let mut s = self.state();
            let call = Call {
                program: program.to_string(),
                args: args.iter().map(|a| a.to_string()).collect(),
                stdin: stdin.map(str::to_string),
            };
            let line = call.line();
            let n = s.count;
            s.count += 1;
            let fail = s.fail_at.remove(&n) || s.fail_when.iter().any(|t| line.contains(t));
            s.calls.push(call);
            let delay = s.delay;
            let result = if fail {
                Err(ApplyError::Failed {
                    cmd: line,
                    status: std::process::ExitStatus::from_raw(1 << 8),
                    stderr: "injected failure".to_string(),
                })
            } else {
                Ok(Output {
                    stdout: s.stdout.get(program).cloned().unwrap_or_default(),
                    stderr: String::new(),
                })
            };
            drop(s);
            self.calls_made.send_modify(|n| *n += 1);
            (delay, result)
        }
    }

    impl Runner for Recording {
        fn run<'a>(
            &'a self,
            program: &'a str,
            args: &'a [&'a str],
            stdin: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Output, ApplyError>> {
            let (delay, result) = self.record(program, args, stdin);
            Box::pin(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                result
            })
        }
    }
}
