//! Helpers shared by the DNS integration tests.

/// A loopback port free for both TCP and UDP, below the kernel's ephemeral range
/// (32768-60999 by default). A port from binding port 0 lies inside that range, so an
/// outgoing connection of a test running in parallel can take it between this call and
/// the server's bind ("Address already in use", seen in CI).
pub fn free_port() -> u16 {
    let seed = std::process::id() as usize;
    for i in 0..4000 {
        let port = 20_000 + ((seed.wrapping_mul(7919) + i * 131) % 12_000) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() && !taken(port) {
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999");
}

/// Ports handed out in this process, so two calls never return the same one.
fn taken(port: u16) -> bool {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut t = TAKEN.lock().expect("ports");
    if t.contains(&port) {
        return true;
    }
    t.push(port);
    false
}
