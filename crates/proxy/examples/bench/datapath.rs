//! Data path benchmark: requests per second from the node to a pod through a cluster IP
//! against straight to the pod IP, with the same load generator in the same run.
//!
//! Three namespaces: a node (the proxy's rules, `N` services of which the last is backed
//! by the pod), the pod and a client pod, each pod on a veth pair to the node. The
//! load comes from the client pod (pod to Service to pod, routed by the node: the
//! common case in a cluster) and from the node itself (`--from node` or `--from pod`
//! for one of them; both by default). Client threads are pinned to one CPU, the
//! server's threads to the other, so that the two do not take turns on a core
//! differently in the two paths. Rounds alternate
//! direct and cluster IP (`--rounds`, `--secs` each) so that both see the same load
//! from the rest of the machine; each pair of adjacent rounds gives one ratio, and the
//! median and spread of the ratios are printed. Two styles: a new connection per
//! request (every request is a new conntrack entry through the NAT rules) and
//! keep-alive (one connection per client, requests and answers on it: only the first
//! packet of a connection traverses the NAT rules).
//!
//! The two paths must not disturb each other through kernel state: the pod serves the
//! direct path on port 80 and the Service's target port 81, so the conntrack entries of
//! one path never hold the tuples of the other. Rates are requests over the measured
//! length of the round (a connect that waits for a SYN retransmission stretches it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_proxy::model::build;
use skiff_proxy::ProxyMode;

use crate::fixtures::{many, service, slice};
use crate::Netns;

const POD_IP: &str = "10.244.1.10";
const CLIENT_IP: &str = "10.244.2.10";
const CLUSTER_IP: &str = "10.96.0.2";
/// The pod's port for direct requests.
const DIRECT_PORT: u16 = 80;
/// The pod's port behind the Service (its target port).
const TARGET_PORT: u16 = 81;
/// Server threads per port (each serves one connection at a time).
const SERVERS: usize = 4;

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rounds per path and style.
    pub rounds: usize,
    /// Length of a round.
    pub secs: f64,
    /// Client threads.
    pub clients: usize,
    /// Where the load comes from: the client pod, the node, or both (`None`).
    pub from: Option<From>,
}

/// Where the load generator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// A pod on the node: its traffic is routed (and DNATed in prerouting).
    Pod,
    /// The node's own namespace: DNATed in the output hook.
    Node,
}

impl Options {
    /// `--rounds R` (default 15), `--secs S` (default 1), `--clients C` (default 1).
    pub fn from_args(args: &[String]) -> Options {
        let get = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .and_then(|v| v.parse::<f64>().ok())
        };
        Options {
            rounds: get("--rounds").map_or(15, |v| v as usize).max(1),
            secs: get("--secs").unwrap_or(1.0),
            clients: get("--clients").map_or(1, |v| v as usize).clamp(1, SERVERS),
            from: match args
                .iter()
                .position(|a| a == "--from")
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
            {
                Some("pod") => Some(From::Pod),
                Some("node") => Some(From::Node),
                _ => None,
            },
        }
    }
}

fn sh(cmd: &str) -> anyhow::Result<()> {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()?;
    anyhow::ensure!(st.success(), "{cmd} failed");
    Ok(())
}

/// Moves the calling thread into a network namespace.
fn enter(ns: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// Pins the calling thread to one CPU (modulo the CPUs there are); best effort.
fn pin(cpu: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu % cpus).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// The pod's server on `port`: answers every 2-byte request with 3 bytes until the
/// client closes. Threads block in `accept`; `stop` plus one connection each ends them.
fn serve(
    pod: &str,
    port: u16,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let pod = pod.to_string();
    // Bind inside the pod's namespace, on a thread of its own.
    std::thread::spawn(move || {
        let r = enter(&pod).and_then(|_| Ok(TcpListener::bind(("0.0.0.0", port))?));
        let _ = tx.send(r);
    });
    let listener = rx.recv()??;
    let mut handles = Vec::new();
    for _ in 0..SERVERS {
        let l = listener.try_clone()?;
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            pin(1);
            while !stop.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = l.accept() else { continue };
                let _ = s.set_nodelay(true);
                let mut req = [0u8; 2];
                while s.read_exact(&mut req).is_ok() {
                    if s.write_all(b"ok\n").is_err() {
                        break;
                    }
                }
            }
        }));
    }
    Ok(handles)
}

/// One request: send 2 bytes, read the 3-byte answer.
fn ask(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 3];
    s.write_all(b"x\n").is_ok() && s.read_exact(&mut buf).is_ok()
}

/// Requests per second to `addr` from namespace `from`, `clients` threads for `secs`.
fn load(from: &str, addr: &str, clients: usize, secs: f64, keep_alive: bool) -> f64 {
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (from, addr) = (from.to_string(), addr.to_string());
            std::thread::spawn(move || {
                if enter(&from).is_err() {
                    return 0.0;
                }
                pin(0);
                let start = Instant::now();
                let end = start + Duration::from_secs_f64(secs);
                let mut n = 0u64;
                let mut conn: Option<TcpStream> = None;
                while Instant::now() < end {
                    if conn.is_none() {
                        conn = TcpStream::connect(&addr).ok();
                        if let Some(c) = &conn {
                            let _ = c.set_nodelay(true);
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    if ask(c) {
                        n += 1;
                    } else {
                        conn = None;
                        continue;
                    }
                    if !keep_alive {
                        // The client closes first (TIME_WAIT here), as an HTTP client
                        // without keep-alive does.
                        conn = None;
                    }
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Programs `n` services in `mode` and measures both paths in both styles.
pub async fn run(n: u32, mode: ProxyMode, opts: &Options) -> anyhow::Result<()> {
    let base = format!("skb-{}-dp", std::process::id());
    let (node, pod, client) = (
        format!("{base}-n"),
        format!("{base}-p"),
        format!("{base}-c"),
    );
    let _g1 = Netns(node.clone());
    let _g2 = Netns(pod.clone());
    let _g3 = Netns(client.clone());
    sh(&format!(
        "ip netns add {node} && ip netns add {pod} && ip netns add {client}"
    ))?;
    sh(&format!(
        "ip -n {node} link set lo up && ip -n {pod} link set lo up && \
         ip -n {client} link set lo up && \
         ip -n {node} link add veth0 type veth peer name eth0 netns {pod} && \
         ip -n {node} addr add 10.244.1.1/24 dev veth0 && ip -n {node} link set veth0 up && \
         ip -n {pod} addr add {POD_IP}/24 dev eth0 && ip -n {pod} link set eth0 up && \
         ip -n {pod} route add default via 10.244.1.1 && \
         ip -n {node} link add veth1 type veth peer name eth0 netns {client} && \
         ip -n {node} addr add 10.244.2.1/24 dev veth1 && ip -n {node} link set veth1 up && \
         ip -n {client} addr add {CLIENT_IP}/24 dev eth0 && ip -n {client} link set eth0 up && \
         ip -n {client} route add default via 10.244.2.1 && \
         ip -n {node} route add default via {POD_IP} && \
         ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1 && \
         for ns in {node} {client}; do \
           ip netns exec $ns sysctl -qw net.ipv4.tcp_tw_reuse=1 && \
           ip netns exec $ns sysctl -qw net.ipv4.ip_local_port_range='1024 65000'; \
         done"
    ))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers = serve(&pod, DIRECT_PORT, stop.clone())?;
    servers.extend(serve(&pod, TARGET_PORT, stop.clone())?);

    // N services; the pod backs `zz-real`, which sorts after the others: in iptables
    // mode a new connection walks `KUBE-SERVICES` rule by rule, so its rule being last
    // is the worst case for the cluster IP path (and what the direct path pays too: it
    // walks them all without a match).
    let (mut services, mut slices) = many(n.saturating_sub(1));
    services.push(service(
        "bench",
        "zz-real",
        "ClusterIP",
        CLUSTER_IP,
        &[("http", 80, "TCP", 0)],
    ));
    slices.push(slice(
        "bench",
        "zz-real",
        "zz-real-1",
        &[("http", TARGET_PORT.into(), "TCP")],
        &[(POD_IP, "n1", true, true, false)],
    ));
    let mut engine = crate::engine(mode, crate::in_netns(&node))?;
    let (ports, _) = build(&services, &slices, "n1");
    engine.sync(&ports, false).await?;

    let sources = match opts.from {
        Some(f) => vec![f],
        None => vec![From::Pod, From::Node],
    };
    for (from, keep_alive) in sources.iter().flat_map(|f| [(*f, false), (*f, true)]) {
        let from_ns = match from {
            From::Pod => &client,
            From::Node => &node,
        };
        let (mut direct, mut via, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..opts.rounds {
            // Alternate which path goes first, so neither always follows the other.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            let (mut d, mut v) = (0.0, 0.0);
            for through_service in order {
                let addr = if through_service {
                    format!("{CLUSTER_IP}:80")
                } else {
                    format!("{POD_IP}:{DIRECT_PORT}")
                };
                let r = load(from_ns, &addr, opts.clients, opts.secs, keep_alive);
                if through_service {
                    v = r;
                } else {
                    d = r;
                }
            }
            direct.push(d);
            via.push(v);
            ratios.push(v / d.max(1.0));
        }
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        let style = if keep_alive {
            "keep-alive"
        } else {
            "new connection per request"
        };
        let from = match from {
            From::Pod => "pod",
            From::Node => "node",
        };
        println!(
            "| {mode:?} | {n} | {from} | {style} | {:.0} | {:.0} | {:.3} ({lo:.3}-{hi:.3}) |",
            median(&mut direct),
            median(&mut via),
            median(&mut ratios),
        );
    }

    stop.store(true, Ordering::SeqCst);
    // Wake the servers blocked in accept.
    let waker = std::thread::spawn({
        let node = node.clone();
        move || {
            if enter(&node).is_ok() {
                for port in [DIRECT_PORT, TARGET_PORT] {
                    for _ in 0..SERVERS {
                        let _ = TcpStream::connect((POD_IP, port));
                    }
                }
            }
        }
    });
    let _ = waker.join();
    for s in servers {
        let _ = s.join();
    }
    Ok(())
}
