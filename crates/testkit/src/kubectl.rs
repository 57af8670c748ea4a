//! The real kubectl, as tests run it: which binaries there are (the Google Cloud SDK's
//! versioned clients `kubectl.1.27` … `kubectl.1.33`, and `kubectl` on `PATH`) and a
//! runner for one of them with a kubeconfig, arguments and optional stdin, bounded by a
//! deadline.
//!
//! ```no_run
//! use skiff_testkit::kubectl::{self, Kubectl};
//! let bins = kubectl::versions(&["1.27", "1.33"]);
//! for bin in bins {
//!     let k = Kubectl::new(bin, "/tmp/kubeconfig");
//!     let out = k.run(&["get", "ns"]);
//!     assert!(out.success, "{}", out.describe());
//! }
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the Google Cloud SDK keeps its versioned kubectl clients (`kubectl.1.27` …).
pub const SDK_BIN: &str = "/usr/lib/google-cloud-sdk/bin";

/// The oldest kubectl the product supports (SPDY/3.1 for exec, attach, port-forward).
pub const OLDEST: &str = "1.27";

/// The newest kubectl the product supports (WebSocket v5 for exec and attach).
pub const NEWEST: &str = "1.33";

/// How long one kubectl command may run unless a test says otherwise: longer than any
/// `--timeout` the tests pass to kubectl itself (`rollout status --timeout=120s`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// The versioned client `kubectl.<version>` of the SDK, if installed.
pub fn version(version: &str) -> Option<PathBuf> {
    Some(Path::new(SDK_BIN).join(format!("kubectl.{version}"))).filter(|p| p.exists())
}

/// The installed ones of the versioned clients `versions` (e.g. `["1.27", "1.33"]`), in
/// that order. Tests assert the list is not empty: a missing kubectl fails, not skips.
pub fn versions(versions: &[&str]) -> Vec<PathBuf> {
    versions.iter().filter_map(|v| version(v)).collect()
}

/// The first `kubectl` on `PATH`, if any.
pub fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|k| k.exists())
}

/// The first `kubectl` on `PATH`.
///
/// # Panics
/// When there is none (install it: `scripts/install-deps.sh`).
#[track_caller]
pub fn default() -> PathBuf {
    on_path().unwrap_or_else(|| panic!("kubectl is missing (scripts/install-deps.sh installs it)"))
}

/// What one kubectl command did.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit status 0 (false also when the deadline killed it).
    pub success: bool,
    /// The exit code (`None` when killed by a signal, the deadline's too).
    pub code: Option<i32>,
    /// Whether the deadline ran out and the process was killed.
    pub timed_out: bool,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// `(success, stdout, stderr)`, for `let (ok, out, err) = k.run(..).parts();`.
    pub fn parts(self) -> (bool, String, String) {
        (self.success, self.stdout, self.stderr)
    }

    /// stdout followed by stderr, as a terminal would show them.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Exit code, timeout, stdout and stderr, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "exit {:?}{}\nstdout: {}\nstderr: {}",
            self.code,
            if self.timed_out {
                " (deadline ran out)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }
}

/// One kubectl binary against one cluster: its kubeconfig, optionally a cache directory
/// of its own (so runs against different servers do not share discovery), extra
/// environment, and a deadline per command.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The binary.
    pub bin: PathBuf,
    /// `KUBECONFIG` of every run.
    pub kubeconfig: PathBuf,
    /// `--cache-dir` of every run, if set.
    pub cache: Option<PathBuf>,
    /// Extra environment variables of every run.
    pub env: Vec<(String, String)>,
    /// How long one run may take before it is killed.
    pub deadline: Duration,
}

impl Kubectl {
    /// `bin` with `kubeconfig`, no cache directory, [`DEFAULT_DEADLINE`].
    pub fn new(bin: impl Into<PathBuf>, kubeconfig: impl Into<PathBuf>) -> Self {
        Kubectl {
            bin: bin.into(),
            kubeconfig: kubeconfig.into(),
            cache: None,
            env: Vec::new(),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// Passes `--cache-dir=<dir>` on every run.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(dir.into());
        self
    }

    /// Sets `key=value` in the environment of every run.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((
            key.to_string(),
            value.as_ref().to_string_lossy().into_owned(),
        ));
        self
    }

    /// Kills a run after `deadline`.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The binary's path as text, to name it in assertion messages.
    pub fn who(&self) -> String {
        self.bin.display().to_string()
    }

    /// Runs kubectl with `args` and no stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None)
    }

    /// Runs kubectl with `args`, `stdin` written to its standard input when given
    /// (otherwise it reads /dev/null).
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.bin);
        // Before the sub-command's arguments, so that it never lands after a `--`.
        if let Some(cache) = &self.cache {
            cmd.arg(format!("--cache-dir={}", cache.display()));
        }
        cmd.args(args);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        // Each pipe has its own thread, so none can fill up and block the others.
        let writer = child.stdin.take().zip(stdin).map(|(mut w, input)| {
            let input = input.to_string();
            std::thread::spawn(move || {
                let _ = w.write_all(input.as_bytes());
            })
        });
        let read = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let stdout = read(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = read(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let start = Instant::now();
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() >= self.deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        if let Some(w) = writer {
            let _ = w.join();
        }
        Output {
            success: !timed_out && status.is_some_and(|s| s.success()),
            code: status.and_then(|s| s.code()),
            timed_out,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }

    /// [`Kubectl::run_with`] on tokio's blocking pool, for async tests.
    pub async fn run_async(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let k = self.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            k.run_with(&args, stdin.as_deref())
        })
        .await
        .expect("the kubectl task")
    }

    /// stdout of a command that must succeed.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.success,
            "{} {}: {}",
            self.who(),
            args.join(" "),
            out.describe()
        );
        out.stdout
    }

    /// stdout of a command that must succeed without printing anything on stderr (no
    /// warning either).
    #[track_caller]
    pub fn ok_quiet(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.success && out.stderr.is_empty(),
            "{} {}: {}",
            self.who(),
            args.join(" "),
            out.describe()
        );
        out.stdout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh` stands in for kubectl: the runner's plumbing, not kubectl's behaviour.
    fn sh() -> Kubectl {
        Kubectl::new("/bin/sh", "/nonexistent/kubeconfig")
    }

    #[test]
    fn runs_with_kubeconfig_env_and_stdin() {
        let out = sh().env("EXTRA", "x").run_with(
            &["-c", "echo $KUBECONFIG $EXTRA; cat; echo err >&2"],
            Some("in\n"),
        );
        assert!(out.success, "{}", out.describe());
        assert_eq!(out.stdout, "/nonexistent/kubeconfig x\nin\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.combined(), "/nonexistent/kubeconfig x\nin\nerr\n");
    }

    #[test]
    fn reports_failure_and_its_code() {
        let out = sh().run(&["-c", "exit 3"]);
        assert!(!out.success);
        assert_eq!(out.code, Some(3));
        assert!(!out.timed_out);
    }

    #[test]
    fn the_deadline_kills_a_hung_command() {
        let t = Instant::now();
        let out = sh()
            .deadline(Duration::from_millis(200))
            .run(&["-c", "exec sleep 30"]);
        assert!(out.timed_out && !out.success, "{}", out.describe());
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn missing_versions_are_left_out() {
        assert!(versions(&["0.0-none"]).is_empty());
    }
}
