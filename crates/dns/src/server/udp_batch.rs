//! A UDP serving loop that moves queries and answers in batches: one `recvmmsg` takes
//! every datagram already queued (up to [`BATCH`]), one `sendmmsg` sends all the
//! answers. Under load this divides the system calls and wake-ups per query, which are
//! most of a DNS server's cost on loopback.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

use super::{Handler, Step};
use crate::metrics::Proto;

/// Most datagrams handled per system call.
pub const BATCH: usize = 32;
/// Receive buffer per datagram: queries are small; a bigger one is cut and gets FORMERR.
const QUERY_MAX: usize = 4096;

/// Serves `sock` forever on the calling thread; upstream work goes to `rt`.
pub fn serve(sock: Arc<std::net::UdpSocket>, handler: Arc<Handler>, rt: tokio::runtime::Handle) {
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; QUERY_MAX]; BATCH];
    let mut rheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut replies: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    loop {
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            // MSG_WAITFORONE: block for the first datagram only, then take what is queued.
            match recvmmsg(
                fd,
                &mut rheaders,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => got.extend(results.map(|r| (r.bytes, r.address))),
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive");
                    // Do not spin if the error persists.
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
        }
        replies.clear();
        addrs.clear();
        for (i, (len, addr)) in got.iter().enumerate() {
            let Some(addr) = addr else { continue };
            match handler.step(&bufs[i][..*len], Proto::Udp) {
                Step::Reply(bytes) => {
                    replies.push(bytes);
                    addrs.push(Some(*addr));
                }
                Step::Upstream(p) => {
                    let Some(peer) = to_std(addr) else { continue };
                    let handler = handler.clone();
                    let sock = sock.clone();
                    rt.spawn(async move {
                        let bytes = handler.upstream(*p).await;
                        if let Err(e) = sock.send_to(&bytes, peer) {
                            tracing::debug!(error = %e, %peer, "udp send");
                        }
                    });
                }
                Step::Drop => {}
            }
        }
        if replies.is_empty() {
            continue;
        }
        let slices: Vec<[IoSlice<'_>; 1]> = replies.iter().map(|r| [IoSlice::new(r)]).collect();
        if let Err(e) = sendmmsg(fd, &mut sheaders, &slices, &addrs, [], MsgFlags::empty()) {
            tracing::debug!(error = %e, "udp send");
        }
    }
}

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
