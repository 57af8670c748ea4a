//! host-local IPAM in process, on host-local's own files, so that the in-process pod
//! network and the `host-local` plugin can take turns on one node (an agent restarted
//! with the other `--network`) without either handing out an address the other holds.
//!
//! The layout is the plugin's (`plugins/ipam/host-local/backend/disk`): one directory
//! per network (`<dataDir>/<network>/`), one file per reserved address named by the
//! address and holding `<container id>\r\n<ifname>`, `last_reserved_ip.<range index>`
//! with the last address handed out (allocation is round-robin from the one after it),
//! and every change made under an exclusive `flock` of the file `lock` in that
//! directory. Only what skiff's config uses is supported: one IPv4 range per network,
//! the whole subnet but its network, gateway (`.1`) and broadcast addresses.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use thiserror::Error;

/// What separates the container ID and the interface name in an address file.
const LINE_BREAK: &str = "\r\n";
/// Prefix of the file holding a range's last reserved address.
const LAST_RESERVED: &str = "last_reserved_ip.";
/// The file whose `flock` guards the directory.
const LOCK: &str = "lock";

/// Why an allocation or release failed.
#[derive(Debug, Error)]
pub enum IpamError {
    /// The range cannot hold any address (a /31 or /32).
    #[error("Network {0} too small to allocate from")]
    TooSmall(Ipv4Net),
    /// The container already holds an address of the range (CNI forbids a second ADD).
    #[error("failed to allocate for range 0: {ip} has been allocated to {id}, duplicate allocation is not allowed")]
    Duplicate {
        /// The address it holds.
        ip: Ipv4Addr,
        /// The container.
        id: String,
    },
    /// Every address of the range is reserved.
    #[error("failed to allocate for range 0: no IP addresses available in range set: {0}")]
    Exhausted(String),
    /// Reading or writing the store.
    #[error("host-local IPAM store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One range of host-local's config, canonicalised as the plugin does (`Canonicalize`):
/// the gateway is the subnet's first address, the range everything from it to the last
/// address before the broadcast; the gateway itself is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The subnet (the pod CIDR).
    pub subnet: Ipv4Net,
    /// First address of the range (inclusive).
    pub start: Ipv4Addr,
    /// Last address of the range (inclusive).
    pub end: Ipv4Addr,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
}

impl Range {
    /// The range of a whole subnet, as host-local makes it from `{"subnet": ...}`.
    pub fn new(subnet: Ipv4Net) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(IpamError::TooSmall(subnet));
        }
        let first = u32::from(subnet.network()) + 1;
        Ok(Range {
            subnet,
            start: first.into(),
            end: (u32::from(subnet.broadcast()) - 1).into(),
            gateway: first.into(),
        })
    }

    /// Whether `ip` is in the range (what host-local's `RangeFor` accepts).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
}

impl std::fmt::Display for Range {
    /// host-local's `RangeSet.String()` of a one-range set: `start-end`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// An address handed out: with the subnet's prefix, and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The address and the subnet's prefix length (`10.244.1.5/24`).
    pub address: Ipv4Net,
    /// The range's gateway.
    pub gateway: Ipv4Addr,
}

/// host-local's round-robin walk (`RangeIter`): from the address after the last reserved
/// one, around the range once, skipping the gateway.
struct Walk {
    range: Range,
    cur: Option<Ipv4Addr>,
    start: Option<Ipv4Addr>,
}

impl Walk {
    fn new(range: Range, last: Option<Ipv4Addr>) -> Self {
        match last.filter(|ip| range.contains(*ip)) {
            Some(last) => Walk {
                range,
                cur: Some(last),
                start: None,
            },
            None => Walk {
                range,
                cur: None,
                start: Some(range.start),
            },
        }
    }
}

impl Iterator for Walk {
    type Item = Ipv4Addr;

    fn next(&mut self) -> Option<Ipv4Addr> {
        loop {
            let next = match self.cur {
                None => {
                    self.start = Some(self.range.start);
                    self.range.start
                }
                Some(cur) => {
                    let next = if cur == self.range.end {
                        self.range.start
                    } else {
                        Ipv4Addr::from(u32::from(cur) + 1)
                    };
                    match self.start {
                        None => self.start = Some(next),
                        Some(s) if s == next => return None,
                        Some(_) => {}
                    }
                    next
                }
            };
            self.cur = Some(next);
            if next != self.range.gateway {
                return Some(next);
            }
        }
    }
}

/// One network's directory of host-local's store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The directory's lock, held until dropped.
type Locked = nix::fcntl::Flock<File>;

impl Store {
    /// The store of `network` under `data_dir` (host-local's `dataDir`), made if missing.
    pub fn open(data_dir: &Path, network: &str) -> Result<Self, IpamError> {
        let dir = data_dir.join(network);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Store { dir })
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the directory's lock, as the plugin's `FileLock` does (`flock(LOCK_EX)` on
    /// `lock`, made 0600 if missing); blocks while another process or thread holds it.
    fn lock(&self) -> Result<Locked, IpamError> {
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .read(true)
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            IpamError::Io {
                path,
                source: e.into(),
            }
        })
    }

    /// The address files and what they hold (trimmed), in no order.
    fn entries(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let rd = std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(rd
            .flatten()
            .filter_map(|e| {
                let ip: Ipv4Addr = e.file_name().to_str()?.parse().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                Some((ip, text.trim().to_string()))
            })
            .collect())
    }

    /// The addresses `id` holds on `ifname`: files holding `id\r\nifname`, or `id` alone
    /// (an older host-local's files), as the plugin's `GetByID`.
    fn held(&self, id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let key = key(id, ifname);
        let old = id.trim();
        Ok(self
            .entries()?
            .into_iter()
            .filter(|(_, held)| *held == key || held == old)
            .map(|(ip, _)| ip)
            .collect())
    }

    /// The addresses `id` holds on `ifname`.
    pub fn find(&self, id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let _lock = self.lock()?;
        self.held(id, ifname)
    }

    /// Every reserved address.
    pub fn reserved(&self) -> Result<Vec<Ipv4Addr>, IpamError> {
        let mut ips: Vec<Ipv4Addr> = self.entries()?.into_iter().map(|(ip, _)| ip).collect();
        ips.sort();
        Ok(ips)
    }

    /// Reserves an address of `range` for `id` on `ifname`, as host-local's ADD does:
    /// refused if the container already holds one, else the first free address of the
    /// round-robin walk, its file created exclusively and `last_reserved_ip.0` updated.
    pub fn allocate(&self, range: &Range, id: &str, ifname: &str) -> Result<Allocation, IpamError> {
        let _lock = self.lock()?;
        if let Some(ip) = self
            .held(id, ifname)?
            .into_iter()
            .find(|ip| range.contains(*ip))
        {
            return Err(IpamError::Duplicate {
                ip,
                id: id.to_string(),
            });
        }
        let last_path = self.dir.join(format!("{LAST_RESERVED}0"));
        let last = std::fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        for ip in Walk::new(*range, last) {
            if self.reserve(id, ifname, ip)? {
                std::fs::write(&last_path, ip.to_string()).map_err(io_err(&last_path))?;
                return Ok(Allocation {
                    address: Ipv4Net::new(ip, range.subnet.prefix_len())
                        .expect("the subnet's own prefix length"),
                    gateway: range.gateway,
                });
            }
        }
        Err(IpamError::Exhausted(range.to_string()))
    }

    /// Creates the address's file unless it exists (false then).
    fn reserve(&self, id: &str, ifname: &str, ip: Ipv4Addr) -> Result<bool, IpamError> {
        let path = self.dir.join(ip.to_string());
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if let Err(e) = file.write_all(key(id, ifname).as_bytes()) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&path)(e));
        }
        Ok(true)
    }

    /// Frees what `id` holds on `ifname` (nothing is fine), as host-local's DEL does:
    /// the files holding `id\r\nifname`, or if there are none, those holding `id` alone.
    pub fn release(&self, id: &str, ifname: &str) -> Result<(), IpamError> {
        let _lock = self.lock()?;
        let entries = self.entries()?;
        let key = key(id, ifname);
        let mut matching: Vec<Ipv4Addr> = entries
            .iter()
            .filter(|(_, held)| *held == key)
            .map(|(ip, _)| *ip)
            .collect();
        if matching.is_empty() {
            matching = entries
                .iter()
                .filter(|(_, held)| held == id.trim())
                .map(|(ip, _)| *ip)
                .collect();
        }
        for ip in matching {
            let path = self.dir.join(ip.to_string());
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(())
    }
}

/// What an address file holds.
fn key(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(cidr: &str) -> Range {
        Range::new(cidr.parse().unwrap()).unwrap()
    }

    #[test]
    fn ranges_as_host_local_canonicalises_them() {
        let r = range("10.244.1.0/24");
        assert_eq!(r.start, Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(r.end, Ipv4Addr::new(10, 244, 1, 254));
        assert_eq!(r.gateway, Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(r.to_string(), "10.244.1.1-10.244.1.254");
        // Host bits set in the config are dropped.
        assert_eq!(range("10.244.1.7/24"), r);
        assert_eq!(
            Range::new("10.0.0.0/31".parse().unwrap())
                .unwrap_err()
                .to_string(),
            "Network 10.0.0.0/31 too small to allocate from"
        );
    }

    #[test]
    fn allocates_in_files_host_local_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "skiff").unwrap();
        let r = range("10.244.1.0/24");
        let a = store.allocate(&r, "pod-a", "eth0").unwrap();
        // .1 is the gateway.
        assert_eq!(a.address, "10.244.1.2/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(a.gateway, Ipv4Addr::new(10, 244, 1, 1));
        let dir = tmp.path().join("skiff");
        assert_eq!(
            std::fs::read_to_string(dir.join("10.244.1.2")).unwrap(),
            "pod-a\r\neth0"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(),
            "10.244.1.2"
        );
        assert!(dir.join("lock").exists());
        let b = store.allocate(&r, "pod-b", "eth0").unwrap();
        assert_eq!(b.address.addr(), Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(
            store.find("pod-b", "eth0").unwrap(),
            vec![Ipv4Addr::new(10, 244, 1, 3)]
        );
        assert_eq!(
            store.allocate(&r, "pod-a", "eth0").unwrap_err().to_string(),
            "failed to allocate for range 0: 10.244.1.2 has been allocated to pod-a, duplicate allocation is not allowed"
        );
    }

    #[test]
    fn round_robin_after_the_last_reserved_address() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "skiff").unwrap();
        let r = range("10.244.1.0/24");
        let a = store.allocate(&r, "a", "eth0").unwrap().address.addr();
        store.release("a", "eth0").unwrap();
        assert!(!store.dir().join(a.to_string()).exists());
        // A freed address is not handed out again before the rest of the range.
        let b = store.allocate(&r, "b", "eth0").unwrap().address.addr();
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3));
        // As host-local: a last_reserved_ip written by the plugin is where the next walk
        // starts, and the walk wraps past the end (skipping the gateway).
        std::fs::write(store.dir().join("last_reserved_ip.0"), "10.244.1.254").unwrap();
        let c = store.allocate(&r, "c", "eth0").unwrap().address.addr();
        assert_eq!(c, Ipv4Addr::new(10, 244, 1, 2));
        // An address outside the range in last_reserved_ip: from the start.
        std::fs::write(store.dir().join("last_reserved_ip.0"), "10.9.9.9").unwrap();
        let d = store.allocate(&r, "d", "eth0").unwrap().address.addr();
        assert_eq!(d, Ipv4Addr::new(10, 244, 1, 4));
    }

    #[test]
    fn skips_addresses_the_plugin_holds_and_frees_its_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "skiff").unwrap();
        let r = range("10.244.1.0/24");
        // What host-local (v0.7+) and an older host-local (id alone) leave.
        std::fs::write(store.dir().join("10.244.1.2"), "cni-pod\r\neth0").unwrap();
        std::fs::write(store.dir().join("10.244.1.3"), "old-pod").unwrap();
        let a = store.allocate(&r, "mine", "eth0").unwrap();
        assert_eq!(a.address.addr(), Ipv4Addr::new(10, 244, 1, 4));
        store.release("cni-pod", "eth0").unwrap();
        store.release("old-pod", "eth0").unwrap();
        assert_eq!(
            store.reserved().unwrap(),
            vec![Ipv4Addr::new(10, 244, 1, 4)]
        );
        // Releasing what is not held is fine; another interface's address stays.
        std::fs::write(store.dir().join("10.244.1.9"), "mine\r\nnet1").unwrap();
        store.release("mine", "eth0").unwrap();
        store.release("mine", "eth0").unwrap();
        assert_eq!(
            store.reserved().unwrap(),
            vec![Ipv4Addr::new(10, 244, 1, 9)]
        );
    }

    #[test]
    fn a_full_range_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "skiff").unwrap();
        // A /30: .1 is the gateway, .2 the only address.
        let r = range("10.0.0.0/30");
        assert_eq!(
            store.allocate(&r, "a", "eth0").unwrap().address.addr(),
            Ipv4Addr::new(10, 0, 0, 2)
        );
        assert_eq!(
            store.allocate(&r, "b", "eth0").unwrap_err().to_string(),
            "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.2"
        );
    }

    #[test]
    fn concurrent_allocations_never_share_an_address() {
        let tmp = tempfile::tempdir().unwrap();
        let r = range("10.244.1.0/24");
        let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let dir = tmp.path().to_path_buf();
                    s.spawn(move || {
                        let store = Store::open(&dir, "skiff").unwrap();
                        (0..10)
                            .map(|i| {
                                store
                                    .allocate(&r, &format!("c{t}-{i}"), "eth0")
                                    .unwrap()
                                    .address
                                    .addr()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut unique = ips.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 80);
    }
}
