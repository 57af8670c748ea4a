//! Starting a server for one test.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use skiff_apiserver::{Server, ServerConfig, ServerHandle};
use skiff_testkit::kubectl::Kubectl;

/// A running server and the directory it keeps its state in.
pub struct TestServer {
    pub handle: ServerHandle,
    pub dir: tempfile::TempDir,
}

/// The datastore of a test server keeping its state in `dir`: SQLite in `dir` by default;
/// with `SKIFF_TEST_DATASTORE=etcd`, a key prefix named after `dir` in an etcd cluster
/// that the test process shares (so a server restarted on `dir` finds its objects).
fn datastore(dir: &Path) -> Option<String> {
    match std::env::var("SKIFF_TEST_DATASTORE").as_deref() {
        Ok("etcd") => {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            Some(skiff_testkit::etcd::EtcdCluster::shared().url(&format!("/{name}")))
        }
        _ => None,
    }
}

pub async fn start_in(dir: &Path) -> ServerHandle {
    let cfg = ServerConfig {
        data_dir: dir.to_path_buf(),
        bind: (Ipv4Addr::LOCALHOST, 0).into(),
        advertise_address: Some(Ipv4Addr::LOCALHOST),
        datastore: datastore(dir),
        ..Default::default()
    };
    Server::start(cfg).await.expect("server starts")
}

pub async fn start() -> TestServer {
    let dir = tempfile::Builder::new()
        .prefix(&format!("skt-{}-api-", std::process::id()))
        .tempdir()
        .expect("temp dir");
    let handle = start_in(dir.path()).await;
    TestServer { handle, dir }
}

impl TestServer {
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.handle.admin_client_config()).expect("client")
    }

    /// Writes an admin kubeconfig and returns its path.
    pub fn kubeconfig(&self) -> PathBuf {
        let url = format!("https://127.0.0.1:{}", self.handle.port());
        let text = skiff_apiserver::pki::admin_kubeconfig(self.dir.path(), &url, "skiff-test")
            .expect("kubeconfig");
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// kubectl `bin` against this server, with a cache directory of its own.
    pub fn kubectl(&self, bin: PathBuf) -> Kubectl {
        Kubectl::new(bin, self.kubeconfig()).cache_dir(self.dir.path().join("cache"))
    }
}
