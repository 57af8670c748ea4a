//! The benchmarks' server: a real `skiff-apiserver` in a child process (the example's
//! own binary run with `--serve DIR`), so that its memory and CPU are measured apart
//! from the load generator's. Shared by `apibench`, `crdbench` and `slowwatch`.

#![allow(dead_code)] // Each example uses a part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The child's side: a server on a free loopback port keeping its state in `dir`; the
/// port goes to `DIR/port` (written whole: renamed into place).
pub async fn serve(dir: &Path) -> Result<()> {
    let cfg = skiff_apiserver::ServerConfig {
        data_dir: dir.to_path_buf(),
        bind: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        advertise_address: Some(std::net::Ipv4Addr::LOCALHOST),
        ..Default::default()
    };
    let h = skiff_apiserver::Server::start(cfg).await?;
    let tmp = dir.join("port.tmp");
    std::fs::write(&tmp, h.port().to_string())?;
    std::fs::rename(&tmp, dir.join("port"))?;
    h.wait().await
}

/// The server child: killed and its directory removed on drop, also when the benchmark
/// fails.
pub struct ServerProcess {
    child: Child,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its HTTPS port on 127.0.0.1.
    pub port: u16,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl ServerProcess {
    /// Starts the server child in a fresh `$TMPDIR/skt-<pid>-<name>` and waits (60 s at
    /// most) for its port; returns it with an admin client configuration.
    pub async fn start(name: &str) -> Result<(ServerProcess, kube::Config)> {
        let dir = std::env::temp_dir().join(format!("skt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("--serve")
            .arg(&dir)
            .spawn()
            .context("starting the server")?;
        let mut proc = ServerProcess {
            child,
            dir: dir.clone(),
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        proc.port = loop {
            if let Ok(p) = std::fs::read_to_string(dir.join("port")) {
                break p.trim().parse::<u16>()?;
            }
            if Instant::now() > deadline {
                bail!("the server did not start within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let text = skiff_apiserver::pki::admin_kubeconfig(
            &dir,
            &format!("https://127.0.0.1:{}", proc.port),
            "b",
        )?;
        let kc = kube::config::Kubeconfig::from_yaml(&text)?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok((proc, cfg))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's resident memory now and at its peak, in MiB.
    pub fn rss_mib(&self) -> (u64, u64) {
        rss_mib(self.pid())
    }

    /// The child's user + system CPU seconds.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(&self.pid().to_string())
    }
}

/// Resident memory of process `pid` now and at its peak, in MiB.
pub fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:") / 1024, kb("VmHWM:") / 1024)
}

/// User + system CPU seconds of a process (`self` for this one).
pub fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
