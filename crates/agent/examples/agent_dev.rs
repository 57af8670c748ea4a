//! A bare agent process for tests (the real command line is `skiff agent`): settings
//! come from `SKIFF_AGENT_*` environment variables.

use std::path::PathBuf;

fn var(name: &str) -> String {
    std::env::var(format!("SKIFF_AGENT_{name}")).unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    // The agent starts its runtime service as `<this executable> runtime-service`:
    // served here, single-threaded, before any runtime starts.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(skiff_agent::containers::service::SUBCOMMAND) {
        let root = args.get(3).map(PathBuf::from).unwrap_or_default();
        return skiff_agent::containers::service::serve_inherited(&root);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(agent())
}

async fn agent() -> anyhow::Result<()> {
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
        // `SKIFF_AGENT_RUNTIME=runc` runs runc.
        runtime: Some(var("RUNTIME"))
            .filter(|v| !v.is_empty())
            .map(|v| v.parse())
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or_default(),
        runtime_service: None,
        kubelet_port: skiff_api::defaults::KUBELET_PORT,
        skiff_binary: "/bin/busybox".into(),
        resolv_conf: None,
        registries: Default::default(),
        image_gc: Default::default(),
        credentials: None,
    };
    skiff_agent::run(cfg).await
}
