//! The pod network of a node, on one of two paths ([`Network`]) that keep the same state,
//! so that a running node can switch between them (an agent restarted with the other
//! `--network` tears down what the other path set up, and neither hands out an address
//! the other holds):
//!
//! - [`Network::Plugins`]: the standard CNI plugins, called as the CNI spec says: the
//!   network config on stdin, the command and container in environment variables, a
//!   chained list (`bridge` then `portmap`) with each plugin's result passed to the next
//!   as `prevResult`, and DEL in reverse order with the cached ADD result.
//! - [`Network::Builtin`] (the default): what `bridge` with `host-local` does for that
//!   config, in process ([`super::bridge`] over rtnetlink, [`super::ipam`] on
//!   host-local's files); the `portmap` plugin still runs, for pods with hostPorts only,
//!   chained after it with the same result.
//!
//! Both write the same cached result (`<state>/results/<id>.json`, the plugin chain's
//! result and the port mappings) that DEL reads.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{bridge, ipam};

/// CNI spec version skiff speaks (the Debian plugins support it).
pub const CNI_VERSION: &str = "1.0.0";

/// The network name of skiff's config list (host-local's directory under `ipam/`).
pub const NETWORK_NAME: &str = "skiff";

/// Which code wires pods to the node's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// In process, over rtnetlink, as the `bridge` and `host-local` plugins do.
    #[default]
    Builtin,
    /// The CNI plugin binaries, a process per plugin per pod.
    Plugins,
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Network::Builtin => "builtin",
            Network::Plugins => "cni",
        })
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "builtin" => Ok(Network::Builtin),
            "cni" => Ok(Network::Plugins),
            _ => Err(format!("unknown pod network {s:?}: builtin or cni")),
        }
    }
}

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
    /// The in-process bridge failed.
    #[error("pod network (builtin bridge): {0}")]
    Bridge(#[from] super::bridge::BridgeError),
    /// The in-process IPAM failed.
    #[error("pod network (builtin host-local): {0}")]
    Ipam(#[from] super::ipam::IpamError),
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
    /// Which path wires pods.
    pub network: Network,
}

impl Cni {
    /// The network config list: bridge `cni0` with host-local IPAM over the pod CIDR,
    /// then portmap.
    pub fn conflist(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK_NAME,
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

    /// Attaches the pod's netns on the configured path. Returns the pod's IPv4.
    ///
    /// The loopback is not the `loopback` plugin's job here: [`super::netns::create`]
    /// brings `lo` up as it makes the namespace, which saves a plugin process per pod.
    pub async fn add(
        &self,
        container_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr, CniError> {
        match self.network {
            Network::Builtin => self.add_builtin(container_id, netns, ports).await,
            Network::Plugins => self.add_plugins(container_id, netns, ports).await,
        }
    }

    /// Detaches the pod's netns on the configured path, whichever path attached it. A
    /// missing netns is fine: the address is released anyway.
    pub async fn del(&self, container_id: &str, netns: &Path) -> Result<(), CniError> {
        match self.network {
            Network::Builtin => self.del_builtin(container_id, netns).await,
            Network::Plugins => self.del_plugins(container_id, netns).await,
        }
    }

    /// The plugin chain's ADD.
    async fn add_plugins(
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
        self.write_cache(container_id, &result, ports)?;
        first_ipv4(&result).ok_or_else(|| CniError::Plugin {
            plugin: "bridge".into(),
            command: "ADD".into(),
            message: format!("no IPv4 address in the result {result}"),
        })
    }

    /// Writes the cached result of an ADD: the chain's result and the port mappings.
    fn write_cache(
        &self,
        container_id: &str,
        result: &Value,
        ports: &[PortMapping],
    ) -> Result<(), CniError> {
        let path = self.cache_path(container_id);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let ports_json = serde_json::to_value(ports).unwrap_or(Value::Null);
        std::fs::write(
            &path,
            json!({"result": result, "ports": ports_json}).to_string(),
        )
        .map_err(|source| CniError::Cache { path, source })
    }

    /// The cached result and port mappings of an ADD (null and none if there is none).
    fn read_cache(&self, container_id: &str) -> (Value, Vec<PortMapping>) {
        let cached: Value = std::fs::read(self.cache_path(container_id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let ports: Vec<PortMapping> =
            serde_json::from_value(cached["ports"].clone()).unwrap_or_default();
        (cached["result"].clone(), ports)
    }

    /// The plugin chain's DEL: the chain in reverse with the cached result, then the
    /// cache entry. Idempotent; a missing netns is fine (plugins release IPAM anyway).
    async fn del_plugins(&self, container_id: &str, netns: &Path) -> Result<(), CniError> {
        let path = self.cache_path(container_id);
        let (result, ports) = self.read_cache(container_id);
        let prev = Some(result).filter(|v| !v.is_null());
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

    /// host-local's store of this network (`<state>/ipam/skiff`).
    fn ipam_store(&self) -> Result<ipam::Store, CniError> {
        Ok(ipam::Store::open(
            &self.state_dir.join("ipam"),
            NETWORK_NAME,
        )?)
    }

    /// The in-process ADD: an address from host-local's store, the link
    /// ([`bridge::attach`]), the cached result, then `portmap` for hostPorts. A failure
    /// half way undoes what was done (see [`Cni::del_builtin`]).
    async fn add_builtin(
        &self,
        container_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr, CniError> {
        // Recorded before anything is made, so that a DEL after a crash half way (the
        // orphan cleanup's) still releases the address.
        self.write_cache(container_id, &Value::Null, ports)?;
        match self.attach_builtin(container_id, netns, ports).await {
            Ok(ip) => Ok(ip),
            Err(e) => {
                if let Err(undo) = self.del_builtin(container_id, netns).await {
                    tracing::warn!(error = %undo, "undoing a failed pod network setup");
                }
                Err(e)
            }
        }
    }

    async fn attach_builtin(
        &self,
        container_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr, CniError> {
        let subnet: ipnet::Ipv4Net = self.pod_cidr.parse().map_err(|e| CniError::Plugin {
            plugin: "host-local".into(),
            command: "ADD".into(),
            message: format!("invalid subnet {}: {e}", self.pod_cidr),
        })?;
        let range = ipam::Range::new(subnet)?;
        let store = self.ipam_store()?;
        let id = container_id.to_string();
        // flock may wait for a host-local process.
        let alloc =
            tokio::task::spawn_blocking(move || store.allocate(&range, &id, bridge::IFNAME))
                .await
                .map_err(|e| CniError::Plugin {
                    plugin: "host-local".into(),
                    command: "ADD".into(),
                    message: format!("the IPAM task: {e}"),
                })??;
        let attached = bridge::attach(netns, &alloc).await?;
        let result = json!({
            "cniVersion": CNI_VERSION,
            "interfaces": [attached.bridge, attached.host, attached.pod],
            "ips": [{
                "interface": 2,
                "address": alloc.address.to_string(),
                "gateway": alloc.gateway.to_string(),
            }],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {},
        });
        self.write_cache(container_id, &result, ports)?;
        if !ports.is_empty() {
            let list = self.conflist();
            let conf = plugin_conf(&list, &list["plugins"][1], Some(&result), ports);
            exec_plugin(
                &self.bin_dir,
                "ADD",
                container_id,
                netns,
                bridge::IFNAME,
                &conf,
            )
            .await?;
        }
        Ok(alloc.address.addr())
    }

    /// The in-process DEL, of what either path attached: `portmap` for hostPorts, the
    /// link ([`bridge::detach`], also when the netns is gone), the address, the cache
    /// entry. Every step is tried; the first failure is returned.
    async fn del_builtin(&self, container_id: &str, netns: &Path) -> Result<(), CniError> {
        let path = self.cache_path(container_id);
        let (result, ports) = self.read_cache(container_id);
        let mut first_err: Option<CniError> = None;
        if !ports.is_empty() {
            let list = self.conflist();
            let prev = Some(&result).filter(|v| !v.is_null());
            let conf = plugin_conf(&list, &list["plugins"][1], prev, &ports);
            if let Err(e) = exec_plugin(
                &self.bin_dir,
                "DEL",
                container_id,
                netns,
                bridge::IFNAME,
                &conf,
            )
            .await
            {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = bridge::detach(netns, host_veth(&result).as_deref()).await {
            first_err.get_or_insert(e.into());
        }
        let released = match self.ipam_store() {
            Ok(store) => {
                let id = container_id.to_string();
                tokio::task::spawn_blocking(move || store.release(&id, bridge::IFNAME))
                    .await
                    .unwrap_or_else(|e| {
                        Err(ipam::IpamError::Io {
                            path: PathBuf::new(),
                            source: std::io::Error::other(e),
                        })
                    })
                    .map_err(CniError::from)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            first_err.get_or_insert(e);
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

/// The host end of the veth pair in a cached result: the interface outside any sandbox
/// that is not the bridge.
fn host_veth(result: &Value) -> Option<String> {
    result["interfaces"].as_array()?.iter().find_map(|i| {
        let name = i["name"].as_str()?;
        (i.get("sandbox").is_none_or(|s| s.is_null() || s == "") && name != bridge::BRIDGE)
            .then(|| name.to_string())
    })
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
            network: Network::Plugins,
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

    #[test]
    fn finds_the_host_end_in_either_paths_result() {
        // The bridge plugin's result, as cached by the plugin path.
        let plugin = json!({"interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
            {"name": "veth1a2b3c4d", "mac": "11:22:33:44:55:66"},
            {"name": "eth0", "mac": "0a:0b:0c:0d:0e:0f", "sandbox": "/var/run/netns/p"}
        ]});
        assert_eq!(host_veth(&plugin).as_deref(), Some("veth1a2b3c4d"));
        assert_eq!(host_veth(&Value::Null), None);
    }

    #[test]
    fn network_names_on_the_command_line() {
        assert_eq!("builtin".parse::<Network>(), Ok(Network::Builtin));
        assert_eq!("cni".parse::<Network>(), Ok(Network::Plugins));
        assert!("flannel".parse::<Network>().is_err());
        assert_eq!(Network::default().to_string(), "builtin");
        assert_eq!(Network::Plugins.to_string(), "cni");
    }
}
