//! A bare agent process for tests (the real command line is `skiff agent`): settings
//! come from `SKIFF_AGENT_*` environment variables.

use std::path::PathBuf;

fn var(name: &str) -> String {
    std::env::var(format!("SKIFF_AGENT_{name}")).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = skiff_agent::AgentConfig {
        server_url: var("SERVER"),
        token: var("TOKEN"),
        ca_file: Some(PathBuf::from(var("CA"))).filter(|p| !p.as_os_str().is_empty()),
        node_name: var("NODE"),
        node_ip: None,
        data_dir: PathBuf::from(var("DATA")),
        netns_prefix: var("NETNS_PREFIX"),
        node_labels: Default::default(),
        register_with_taints: vec![],
        cluster_dns: skiff_api::defaults::DNS_SERVICE_IP,
        cluster_domain: skiff_api::defaults::CLUSTER_DOMAIN.into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        // `SKIFF_AGENT_NETWORK=cni` runs the CNI plugins.
        network: Some(var("NETWORK"))
            .filter(|v| !v.is_empty())
            .map(|v| v.parse())
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or_default(),
        kubelet_port: skiff_api::defaults::KUBELET_PORT,
        skiff_binary: "/bin/busybox".into(),
        resolv_conf: None,
        registries: Default::default(),
        image_gc: Default::default(),
        credentials: None,
    };
    skiff_agent::run(cfg).await
}
