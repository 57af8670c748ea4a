//! The in-process API server the runtime's integration tests run against.

use std::net::{Ipv4Addr, SocketAddr};

use kube::Client;

/// Starts an API server on a free loopback port with its state (SQLite) in a temporary
/// directory; returns an admin client, the server (serving until dropped) and the
/// directory (removed when dropped).
pub async fn server() -> (Client, skiff_apiserver::ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = skiff_apiserver::Server::start(skiff_apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        advertise_address: Some(Ipv4Addr::LOCALHOST),
        ..Default::default()
    })
    .await
    .expect("API server");
    let client = Client::try_from(server.admin_client_config()).expect("client");
    (client, server, dir)
}
