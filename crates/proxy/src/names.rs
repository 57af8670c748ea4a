//! Chain and set names, hashed exactly as kube-proxy hashes them.

use sha2::{Digest, Sha256};

use crate::model::{Endpoint, ServicePortName};

/// `base32(sha256(input))`, standard alphabet, as Go's `base32.StdEncoding`.
fn base32_sha256(input: &str) -> String {
    let hash = Sha256::digest(input.as_bytes());
    base32::encode(base32::Alphabet::Rfc4648 { padding: true }, &hash)
}

/// The 16-character hash shared by a port's `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-` and
/// `KUBE-FW-` chains: over `namespace/name:port` followed by the lower-case protocol.
pub fn service_hash(spn: &ServicePortName) -> String {
    base32_sha256(&format!("{}{}", spn.display(), spn.protocol.lower()))[..16].to_string()
}

/// `KUBE-SVC-<hash>`: load-balances over the "Cluster" policy endpoints.
pub fn svc_chain(spn: &ServicePortName) -> String {
    format!("KUBE-SVC-{}", service_hash(spn))
}

/// `KUBE-SVL-<hash>`: load-balances over the node-local endpoints.
pub fn svl_chain(spn: &ServicePortName) -> String {
    format!("KUBE-SVL-{}", service_hash(spn))
}

/// `KUBE-EXT-<hash>`: traffic to node ports, external IPs and load-balancer IPs.
pub fn ext_chain(spn: &ServicePortName) -> String {
    format!("KUBE-EXT-{}", service_hash(spn))
}

/// `KUBE-FW-<hash>`: `loadBalancerSourceRanges` filtering.
pub fn fw_chain(spn: &ServicePortName) -> String {
    format!("KUBE-FW-{}", service_hash(spn))
}

/// `KUBE-SEP-<hash>`: DNAT to one endpoint; the hash covers `namespace/name:port`, the
/// protocol and `ip:port`.
pub fn sep_chain(spn: &ServicePortName, ep: &Endpoint) -> String {
    let input = format!("{}{}{}", spn.display(), spn.protocol.lower(), ep.addr());
    format!("KUBE-SEP-{}", &base32_sha256(&input)[..16])
}

/// Whether a nat chain name is one of the per-service chains the proxy owns (and may
/// delete when no longer used).
pub fn is_service_chain(name: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-SEP-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// nftables: `<hash8>-namespace/name/protocol/portname`, the readable base of a port's
/// chain names (kube-proxy's `servicePortChainNameBase`).
pub fn nft_service_base(spn: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        spn.namespace,
        spn.name,
        spn.protocol.lower(),
        spn.port
    ))
}

/// nftables: `<hash8>-namespace/name/protocol/portname__ip/port`, the base of an
/// endpoint's chain and affinity-set names.
pub fn nft_endpoint_base(spn: &ServicePortName, ep: &Endpoint) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        spn.namespace,
        spn.name,
        spn.protocol.lower(),
        spn.port,
        ep.ip,
        ep.port
    ))
}

/// nft object names are limited to 256 bytes; kube-proxy keeps them under 200.
const NFT_NAME_MAX: usize = 200;

fn hash_and_truncate(name: &str) -> String {
    let full = format!("{}-{}", &base32_sha256(name)[..8], name);
    if full.len() > NFT_NAME_MAX {
        // Names are ASCII (DNS labels, IPs, digits), so byte slicing is safe.
        format!("{}...", &full[..NFT_NAME_MAX - 3])
    } else {
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn httpd() -> ServicePortName {
        ServicePortName {
            namespace: "default".into(),
            name: "httpd-svc".into(),
            port: String::new(),
            protocol: Protocol::Tcp,
        }
    }

    fn ep(ip: &str) -> Endpoint {
        Endpoint {
            ip: ip.parse().expect("ip"),
            port: 80,
            ready: true,
            serving: true,
            terminating: false,
            is_local: false,
        }
    }

    #[test]
    fn seed_chain_names() {
        assert_eq!(svc_chain(&httpd()), "KUBE-SVC-RL3JAE4GN7VOGDGP");
        let seps: Vec<String> = ["10.244.1.101", "10.244.1.102", "10.244.2.35", "10.244.2.36"]
            .iter()
            .map(|ip| sep_chain(&httpd(), &ep(ip)))
            .collect();
        assert_eq!(
            seps,
            [
                "KUBE-SEP-R5YBMKYSG56R4KDU",
                "KUBE-SEP-7G5ANBWSVVLRNZAH",
                "KUBE-SEP-2PT6QZGNQHS4OL4I",
                "KUBE-SEP-I4PXZ6UARQLLOV4E"
            ]
        );
    }

    #[test]
    fn nft_names_are_readable() {
        let base = nft_service_base(&httpd());
        assert!(base.ends_with("-default/httpd-svc/tcp/"), "{base}");
        assert_eq!(base.len(), 8 + 1 + "default/httpd-svc/tcp/".len());
        let e = nft_endpoint_base(&httpd(), &ep("10.244.1.101"));
        assert!(
            e.ends_with("-default/httpd-svc/tcp/__10.244.1.101/80"),
            "{e}"
        );
    }
}
