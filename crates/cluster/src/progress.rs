//! `skiff up`'s progress, as kind prints it: one line per phase with its time, a spinner
//! while a phase runs on a terminal, plain lines otherwise (logs, CI), and a failed
//! phase named with the log to read. The same lines go to the cluster's `up.log`, so a
//! slow start can be explained after the fact.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The spinner's frames (as kind's).
const FRAMES: [&str; 8] = ["⠈⠁", "⠈⠑", "⠈⠱", "⠈⡱", "⢀⡱", "⢄⡱", "⢄⡱", "⢆⡱"];

/// Prints the phases of one `skiff up` to standard error.
pub struct Progress {
    tty: bool,
    current: Option<Phase>,
    log: Option<std::fs::File>,
}

/// A phase under way.
struct Phase {
    title: String,
    started: Instant,
    spinning: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Progress {
    /// Progress on standard error, with a spinner when it is a terminal.
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            current: None,
            log: None,
        }
    }

    /// Also appends each finished phase, with the time it ended, to `path`.
    pub fn log_to(&mut self, path: &std::path::Path) {
        self.log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
    }

    /// Ends the current phase (as done) and starts `title`.
    pub fn phase(&mut self, title: &str) {
        self.finish(true);
        let spinning = self.tty.then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let title = title.to_string();
            let flag = stop.clone();
            let handle = std::thread::spawn(move || {
                let mut i = 0;
                while !flag.load(Ordering::Relaxed) {
                    eprint!("\r {} {title} ", FRAMES[i % FRAMES.len()]);
                    let _ = std::io::stderr().flush();
                    i += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            (stop, handle)
        });
        self.current = Some(Phase {
            title: title.to_string(),
            started: Instant::now(),
            spinning,
        });
    }

    /// Ends the current phase: done, with its time, or failed.
    fn finish(&mut self, ok: bool) {
        let Some(phase) = self.current.take() else {
            return;
        };
        if let Some((stop, handle)) = phase.spinning {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
            eprint!("\r\x1b[2K");
        }
        let secs = phase.started.elapsed().as_secs_f64();
        let line = if ok {
            format!(" ✓ {} ({secs:.2}s)", phase.title)
        } else {
            format!(" ✗ {} (failed after {secs:.2}s)", phase.title)
        };
        eprintln!("{line}");
        if let Some(log) = &mut self.log {
            let now = k8s_openapi::jiff::Timestamp::now();
            let _ = writeln!(log, "{now:.3}{line}");
        }
    }

    /// Ends the last phase as done.
    pub fn done(&mut self) {
        self.finish(true);
    }

    /// Ends the current phase as failed; returns its title.
    pub fn failed(&mut self) -> Option<String> {
        let title = self.current.as_ref().map(|p| p.title.clone());
        self.finish(false);
        title
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A phase still running when `up` returns early failed.
        self.finish(false);
    }
}
