//! Calls the standard CNI plugins as the CNI spec says: the network config on stdin, the
//! command and container in environment variables, a chained list (`bridge` then
//! `portmap`) with each plugin's result passed to the next as `prevResult`, and DEL in
//! reverse order with the cached ADD result.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// CNI spec version skiff speaks (the Debian plugins support it).
pub const CNI_VERSION: &str = "1.0.0";

/// Why a CNI call failed.
#[derive(Debug, Error)]
pub enum CniError {
    /// The plugin binary could not be run.
    #[error("running CNI plugin {plugin}: {source}")]
    Spawn {
        /// Plugin type.
        plugin: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The plugin reported an error.
    #[error("CNI plugin {plugin} failed ({command}): {message}")]
    Plugin {
        /// Plugin type.
        plugin: String,
        /// ADD or DEL.
        command: String,
        /// Its message.
        message: String,
    },
    /// Reading or writing the cached result.
    #[error("CNI result cache {path}: {source}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A hostPort mapping for the portmap plugin (runtimeConfig `portMappings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the node.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Node address to bind, empty for all.
    #[serde(rename = "hostIP", default)]
    pub host_ip: String,
}

/// The pod network of one node.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where the plugin binaries are.
    pub bin_dir: PathBuf,
    /// `<data>/cni`: config, IPAM state, cached results.
    pub state_dir: PathBuf,
    /// The node's pod CIDR.
    pub pod_cidr: String,
}

impl Cni {
    /// The network config list: bridge `cni0` with host-local IPAM over the pod CIDR,
    /// then portmap.
    pub fn conflist(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": "skiff",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.state_dir.join("ipam"),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        })
    }

    /// Writes the config list to `<state>/10-skiff.conflist` (for people looking).
    pub fn write_config(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.state_dir.join("results"))?;
        let text = serde_json::to_vec_pretty(&self.conflist()).map_err(std::io::Error::other)?;
        std::fs::write(self.state_dir.join("10-skiff.conflist"), text)
    }

    fn cache_path(&self, container_id: &str) -> PathBuf {
        self.state_dir
            .join("results")
            .join(format!("{container_id}.json"))
    }

    /// Attaches the pod's netns: the chain. Returns the pod's IPv4.
    ///
    /// The loopback is not the `loopback` plugin's job here: [`super::netns::create`]
    /// brings `lo` up as it makes the namespace, which saves a plugin process per pod.
    pub async fn add(
        &self,
        container_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr, CniError> {
        let list = self.conflist();
        let mut prev: Option<Value> = None;
        // portmap only has work with hostPorts; skipping it saves a plugin run (and its
        // iptables calls) per pod.
        for plugin in list["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !ports.is_empty() || p["type"] != "portmap")
        {
            let conf = plugin_conf(&list, plugin, prev.as_ref(), ports);
            prev =
                Some(exec_plugin(&self.bin_dir, "ADD", container_id, netns, "eth0", &conf).await?);
        }
        let result = prev.unwrap_or(Value::Null);
        let path = self.cache_path(container_id);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let ports_json = serde_json::to_value(ports).unwrap_or(Value::Null);
        std::fs::write(
            &path,
            json!({"result": result, "ports": ports_json}).to_string(),
        )
        .map_err(|source| CniError::Cache {
            path: path.clone(),
            source,
        })?;
        first_ipv4(&result).ok_or_else(|| CniError::Plugin {
            plugin: "bridge".into(),
            command: "ADD".into(),
            message: format!("no IPv4 address in the result {result}"),
        })
    }

    /// Detaches the pod's netns: the chain in reverse with the cached result, then the
    /// cache entry. Idempotent; a missing netns is fine (plugins release IPAM anyway).
    pub async fn del(&self, container_id: &str, netns: &Path) -> Result<(), CniError> {
        let path = self.cache_path(container_id);
        let cached: Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let ports: Vec<PortMapping> =
            serde_json::from_value(cached["ports"].clone()).unwrap_or_default();
        let prev = Some(cached["result"].clone()).filter(|v| !v.is_null());
        let list = self.conflist();
        let mut first_err = None;
        for plugin in list["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .filter(|p| !ports.is_empty() || p["type"] != "portmap")
        {
            let conf = plugin_conf(&list, plugin, prev.as_ref(), &ports);
            if let Err(e) =
                exec_plugin(&self.bin_dir, "DEL", container_id, netns, "eth0", &conf).await
            {
                first_err.get_or_insert(e);
            }
        }
        let _ = std::fs::remove_file(&path);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Container IDs with a cached ADD result (pods that may still hold an address).
    pub fn cached_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.state_dir.join("results"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".json")
                            .map(String::from)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One plugin's stdin: its own keys plus the list's name and version, the previous
/// result, and runtimeConfig for the capabilities it declares.
fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>, ports: &[PortMapping]) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) {
        conf["runtimeConfig"] = json!({"portMappings": ports});
    }
    conf
}

fn first_ipv4(result: &Value) -> Option<Ipv4Addr> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let addr = ip["address"].as_str()?;
        addr.split('/').next()?.parse().ok()
    })
}

async fn exec_plugin(
    bin_dir: &Path,
    command: &str,
    container_id: &str,
    netns: &Path,
    ifname: &str,
    conf: &Value,
) -> Result<Value, CniError> {
    let plugin = conf["type"].as_str().unwrap_or_default().to_string();
    let mut child = Command::new(bin_dir.join(&plugin))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", bin_dir)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CniError::Spawn {
            plugin: plugin.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = conf.to_string().into_bytes();
        stdin
            .write_all(&bytes)
            .await
            .map_err(|source| CniError::Spawn {
                plugin: plugin.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| CniError::Spawn {
            plugin: plugin.clone(),
            source,
        })?;
    if !out.status.success() {
        let parsed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let message = match parsed["msg"].as_str() {
            Some(m) => format!("{m} {}", parsed["details"].as_str().unwrap_or_default())
                .trim()
                .to_string(),
            None => format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_string(),
        };
        return Err(CniError::Plugin {
            plugin,
            command: command.into(),
            message,
        });
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| CniError::Plugin {
        plugin,
        command: command.into(),
        message: format!("unparseable result: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_prev_result_and_port_mappings() {
        let cni = Cni {
            bin_dir: "/usr/lib/cni".into(),
            state_dir: "/d/cni".into(),
            pod_cidr: "10.244.1.0/24".into(),
        };
        let list = cni.conflist();
        assert_eq!(
            list["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(list["plugins"][0]["ipam"]["dataDir"], "/d/cni/ipam");
        let prev = json!({"ips": [{"address": "10.244.1.5/24"}]});
        let ports = vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }];
        let conf = plugin_conf(&list, &list["plugins"][1], Some(&prev), &ports);
        assert_eq!(conf["name"], "skiff");
        assert_eq!(conf["prevResult"], prev);
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        let bridge = plugin_conf(&list, &list["plugins"][0], None, &ports);
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(first_ipv4(&prev), Some(Ipv4Addr::new(10, 244, 1, 5)));
    }
}
