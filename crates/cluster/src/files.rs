//! Files of a local cluster only root may read: the cluster's directory holds the
//! server's keys and database, the join token, logs (which may quote secrets) and
//! `cluster.json`; the kubeconfig `up` writes holds the admin's client key. Directories are
//! 0700 and files 0600, as kind and k3s make theirs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Creates `dir` and its missing parents 0700, and narrows `dir` itself to 0700 if it
/// existed with a wider mode.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", dir.display()))
}

/// Opens `path` for appending, created 0600 (an existing file is narrowed to 0600).
pub fn append_private(path: &Path) -> anyhow::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to its owner", path.display()))?;
    Ok(f)
}

/// Writes `bytes` to `path`, a file only its owner may read (also when it existed).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_with_mode(path, bytes, true)
}

/// Writes `bytes` to `path`: a new file is 0600; an existing one keeps its mode when
/// `narrow` is false (what kind does with a user's kubeconfig), else becomes 0600.
/// Nothing is written before the mode is set.
pub fn write_with_mode(path: &Path, bytes: &[u8], narrow: bool) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    if narrow {
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
    }
    f.set_len(0)
        .and_then(|()| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// Narrows what an older version left in a cluster's directory: the directory and its
/// node directories 0700, `cluster.json` and the logs 0600. (The server and the agents
/// narrow their own data directories when they start.)
pub fn secure_cluster_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    private_dir(dir)?;
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            private_dir(&path)?;
            let logs =
                fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))?;
            for log in logs.flatten().map(|e| e.path()) {
                if log.extension().is_some_and(|e| e == "log") {
                    narrow_file(&log)?;
                }
            }
        } else if meta.is_file() {
            narrow_file(&path)?;
        }
    }
    Ok(())
}

fn narrow_file(path: &Path) -> anyhow::Result<()> {
    let mode = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(what: &str) -> Self {
            let p = std::env::temp_dir().join(format!("skiff-files-{what}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn new_files_are_private_and_existing_ones_keep_their_mode_unless_narrowed() {
        let dir = TempDir::new("modes");
        let p = dir.path().join("config");
        write_with_mode(&p, b"one", false).unwrap();
        assert_eq!(mode(&p), 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_with_mode(&p, b"two", false).unwrap();
        assert_eq!(mode(&p), 0o640);
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        write_private(&p, b"three").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(fs::read_to_string(&p).unwrap(), "three");
    }

    #[test]
    fn an_old_cluster_directory_is_narrowed() {
        let tmp = TempDir::new("cluster");
        let dir = tmp.path().join("c");
        let node = dir.join("k8s-m");
        fs::create_dir_all(&node).unwrap();
        fs::write(dir.join("cluster.json"), "{}").unwrap();
        fs::write(node.join("server.log"), "x").unwrap();
        for (p, m) in [(&dir, 0o755), (&node, 0o755)] {
            fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        }
        for p in [dir.join("cluster.json"), node.join("server.log")] {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        secure_cluster_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&node), 0o700);
        assert_eq!(mode(&dir.join("cluster.json")), 0o600);
        assert_eq!(mode(&node.join("server.log")), 0o600);
        let mut f = append_private(&node.join("agent.log")).unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(mode(&node.join("agent.log")), 0o600);
    }
}
