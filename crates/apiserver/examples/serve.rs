//! Runs the API server alone for manual testing:
//! `cargo run -p skiff-apiserver --example serve -- <data-dir> <port>`; writes
//! `<data-dir>/kubeconfig`.

use std::net::Ipv4Addr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let mut args = std::env::args().skip(1);
    let dir =
        std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/skiff-apiserver".into()));
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(16443);
    let cfg = skiff_apiserver::ServerConfig {
        data_dir: dir.clone(),
        bind: (Ipv4Addr::LOCALHOST, port).into(),
        advertise_address: Some(Ipv4Addr::LOCALHOST),
        ..Default::default()
    };
    let h = skiff_apiserver::Server::start(cfg).await?;
    let kc = skiff_apiserver::pki::admin_kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", h.port()),
        "skiff",
    )?;
    std::fs::write(dir.join("kubeconfig"), kc)?;
    eprintln!("serving on {}", h.port());
    h.wait().await
}

fn tracing_subscriber_init() {}
