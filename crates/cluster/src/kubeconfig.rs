//! Merging a cluster's admin kubeconfig into the user's, as kind does.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::config::{Kubeconfig, NamedCluster, NamedContext};

/// The file `kubectl` reads: the first entry of `$KUBECONFIG`, else `~/.kube/config`.
pub fn user_kubeconfig_path() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".kube").join("config")
}

/// Context name of a local cluster.
pub fn context_name(cluster: &str) -> String {
    format!("skiff-{cluster}")
}

/// Adds (or replaces) the cluster, user and context of `admin` (a kubeconfig whose names
/// are all `skiff-<cluster>`) in the user's kubeconfig and makes it the current context.
pub fn merge(admin_yaml: &str) -> anyhow::Result<PathBuf> {
    let path = user_kubeconfig_path();
    let admin: Kubeconfig =
        serde_yaml_ng::from_str(admin_yaml).context("parsing the admin kubeconfig")?;
    let mut user = if path.exists() {
        Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?
    } else {
        Kubeconfig::default()
    };
    for c in &admin.clusters {
        user.clusters.retain(|x| x.name != c.name);
    }
    for a in &admin.auth_infos {
        user.auth_infos.retain(|x| x.name != a.name);
    }
    for c in &admin.contexts {
        user.contexts.retain(|x| x.name != c.name);
    }
    user.clusters.extend(admin.clusters);
    user.auth_infos.extend(admin.auth_infos);
    user.contexts.extend(admin.contexts);
    user.current_context = admin.current_context;
    write(&path, &user)?;
    Ok(path)
}

/// Removes a cluster's entries from the user's kubeconfig (what `kind delete` does).
pub fn remove(cluster: &str) -> anyhow::Result<()> {
    let path = user_kubeconfig_path();
    if !path.exists() {
        return Ok(());
    }
    let name = context_name(cluster);
    let mut user =
        Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    user.clusters.retain(|c: &NamedCluster| c.name != name);
    user.auth_infos.retain(|a| a.name != name);
    user.contexts.retain(|c: &NamedContext| c.name != name);
    if user.current_context.as_deref() == Some(name.as_str()) {
        user.current_context = None;
    }
    write(&path, &user)
}

fn write(path: &Path, config: &Kubeconfig) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut yaml = serde_yaml_ng::to_string(config)?;
    // kube's Kubeconfig omits these when unset; kubectl wants a complete file.
    if !yaml.contains("apiVersion:") {
        yaml = format!("apiVersion: v1\nkind: Config\n{yaml}");
    }
    // It holds the admin's client key: a new file is 0600; an existing one keeps the mode
    // its owner gave it (as kind writes kubeconfigs).
    crate::files::write_with_mode(path, yaml.as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_kubeconfig_is_private_and_an_existing_one_keeps_its_mode() {
        let dir = std::env::temp_dir().join(format!("skiff-kubeconfig-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(".kube").join("config");
        let admin: Kubeconfig = serde_yaml_ng::from_str(
            "apiVersion: v1\nkind: Config\nusers:\n- name: skiff-x\n  user:\n    client-key-data: c2VjcmV0\n",
        )
        .unwrap();
        write(&path, &admin).unwrap();
        assert_eq!(mode(&path), 0o600, "a new kubeconfig");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("apiVersion: v1\n"), "{text}");
        assert!(text.contains("client-key-data: c2VjcmV0"), "{text}");
        // The user chose another mode for their file: it stays.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&path, &Kubeconfig::default()).unwrap();
        assert_eq!(mode(&path), 0o640, "an existing kubeconfig");
        assert!(!std::fs::read_to_string(&path)
            .unwrap()
            .contains("client-key-data"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
