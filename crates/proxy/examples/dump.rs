//! Prints what a fresh sync writes for N synthetic services (5 endpoints each), for timing
//! the kernel's tools by hand: `cargo run --example dump -- 1000 > rules` gives the
//! `iptables-restore` input, `cargo run --example dump -- 1000 --nft > script` the `nft -f`
//! script (`--nft --pieces DIR`: the transactions of a fresh sync, one file each).

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use fixtures::many;
use skiff_proxy::model::{build, RuleConfig};
use skiff_proxy::{iptables, nft};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nft_mode = args.iter().any(|a| a == "--nft");
    let n: u32 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1000);
    let (services, slices) = many(n);
    let (ports, _) = build(&services, &slices, "n1");
    let cfg = RuleConfig {
        cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
        masquerade_bit: 14,
        node_ips: vec![],
    };
    if nft_mode {
        let state = nft::NftState::default();
        let rules = nft::generate(&ports, &cfg);
        let script = nft::render(&rules, &state, nft::SyncKind::Fresh, &cfg);
        match args.iter().position(|a| a == "--pieces") {
            // The transactions a fresh sync applies, one file each.
            Some(i) => {
                let dir = args.get(i + 1).map_or("pieces", String::as_str);
                std::fs::create_dir_all(dir).expect("pieces directory");
                for (k, piece) in nft::split_fresh(&script).iter().enumerate() {
                    std::fs::write(format!("{dir}/{k:03}.nft"), piece).expect("write piece");
                }
            }
            None => print!("{script}"),
        }
    } else {
        let rules = iptables::generate(&ports, &cfg);
        print!("{}", iptables::render(&rules, None, &Default::default()));
    }
}
