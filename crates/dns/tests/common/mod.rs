//! Helpers shared by the DNS integration tests.

/// A loopback port free for both TCP and UDP, below the kernel's ephemeral range
/// (32768-60999 by default). A port from binding port 0 lies inside that range, so an
/// outgoing connection of a test running in parallel can take it between this call and
/// the server's bind ("Address already in use", seen in CI).
///
/// Ports already handed out in this process are never probed again: a probe binds the
/// port for a moment, and would make the server it was handed to fail its own bind.
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let seed = std::process::id() as usize;
    let mut taken = TAKEN.lock().expect("ports");
    for i in 0..4000 {
        let port = 20_000 + ((seed.wrapping_mul(7919) + i * 131) % 12_000) as u16;
        if taken.contains(&port) {
            continue;
        }
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999");
}
