//! The nftables backend: one table `ip kube-proxy`, kept in memory as applied (the
//! table is never listed back). Each service port's part of the table is kept
//! ([`NftState`] fragments) with the pick ids of its chains, and merged into the whole;
//! a sync renders the difference as one `nft -f -` transaction. A partial sync only
//! flushes chains and sets that are no longer needed (deleting them would make nft fetch
//! the whole table); the next full sync deletes them. After
//! [`Backend::invalidate`] the table is created anew.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::future::BoxFuture;

use super::{Applied, Backend};
use crate::apply;
use crate::model::{Change, RuleConfig, ServicePortName};
use crate::nft::{self, NftState, SyncKind};
use crate::runner::{ApplyError, Runner};

/// nftables mode's state.
#[derive(Debug)]
pub struct Nftables {
    cfg: RuleConfig,
    /// Whether the table must be created from scratch (at first, and after a failure).
    fresh: bool,
    /// Each service port's part of the table as last generated.
    frags: BTreeMap<ServicePortName, NftState>,
    /// The pick ids of the service and local chains.
    picks: nft::PickIds,
    /// The whole table's per-service part as applied (fragments merged, cluster IPs
    /// counted).
    whole: NftState,
    /// Service ports per cluster IP: an address leaves `cluster-ips` with its last port.
    cluster_ip_users: BTreeMap<Ipv4Addr, usize>,
    /// Chains and sets flushed by partial syncs, to be deleted by the next full sync.
    stale: nft::Stale,
}

impl Nftables {
    /// A backend whose first sync creates the table.
    pub fn new(cfg: RuleConfig) -> Nftables {
        Nftables {
            cfg,
            fresh: true,
            frags: BTreeMap::new(),
            picks: nft::PickIds::default(),
            whole: NftState::default(),
            cluster_ip_users: BTreeMap::new(),
            stale: nft::Stale::default(),
        }
    }

    async fn apply(
        &mut self,
        runner: &dyn Runner,
        changed: &[Change<'_>],
        full: bool,
    ) -> Result<Applied, ApplyError> {
        let cfg = &self.cfg;
        let previous = if full { Some(self.whole.clone()) } else { None };
        // The changed ports' parts before and after, rendered as one difference so that
        // an element moving from one port to another is deleted before it is added.
        let (mut before_all, mut after_all) = (NftState::default(), NftState::default());
        for (old, new) in changed {
            let Some(name) = old.or(*new).map(|sp| &sp.name) else {
                continue;
            };
            let before = self.frags.remove(name).unwrap_or_default();
            let after = new
                .map(|sp| nft::port_state(sp, cfg, &mut self.picks))
                .unwrap_or_default();
            for p in before.picks.values() {
                if !after.picks.values().any(|q| q.chain == p.chain) {
                    self.picks.release(&p.chain);
                }
            }
            self.whole.unmerge(&before);
            self.whole.merge(&after);
            before_all.merge(&before);
            after_all.merge(&after);
            if new.is_some() {
                self.frags.insert(name.clone(), after);
            }
            if let Some(o) = old {
                let n = self.cluster_ip_users.entry(o.cluster_ip).or_default();
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.cluster_ip_users.remove(&o.cluster_ip);
                }
            }
            if let Some(n) = new {
                *self.cluster_ip_users.entry(n.cluster_ip).or_default() += 1;
            }
        }
        let old_ips = std::mem::take(&mut self.whole.cluster_ips);
        self.whole.cluster_ips = self.cluster_ip_users.keys().copied().collect();
        for m in [
            nft::SERVICE_IPS,
            nft::SERVICE_NODEPORTS,
            nft::NO_ENDPOINT_SERVICES,
            nft::NO_ENDPOINT_NODEPORTS,
            nft::FIREWALL_IPS,
        ] {
            self.whole.maps.entry(m).or_default();
        }
        if full || self.fresh {
            // Drop the hairpin pairs of endpoints that are gone (see `NftState::hairpin`).
            self.whole.hairpin = self
                .frags
                .values()
                .flat_map(|f| f.hairpin.iter().copied())
                .collect();
        }
        let rules = |whole: &NftState| vec![("nft".to_string(), whole.rule_count())];
        if self.fresh {
            let script = nft::render(&self.whole, &NftState::default(), SyncKind::Fresh, cfg);
            for t in nft::split_fresh(&script) {
                apply::nft_apply(runner, &t).await?;
            }
            self.fresh = false;
            self.stale = nft::Stale::default();
            return Ok(Applied {
                rules: rules(&self.whole),
                input: script,
            });
        }
        let script = if full {
            let prev = previous.unwrap_or_default();
            let mut script = nft::render(&self.whole, &prev, SyncKind::Full, cfg);
            script.push_str(&nft::render_deletions(&self.stale, &self.whole));
            script
        } else {
            // Cluster IPs are shared by a Service's ports: only the net change is
            // written.
            before_all.cluster_ips = old_ips;
            after_all.cluster_ips = self.whole.cluster_ips.clone();
            after_all.complete_pick_maps(&mut before_all, &self.whole);
            let script = nft::render(&after_all, &before_all, SyncKind::Partial, cfg);
            self.stale.extend(nft::stale(&after_all, &before_all));
            script
        };
        if !script.is_empty() {
            apply::nft_apply(runner, &script).await?;
        }
        if full {
            self.stale = nft::Stale::default();
        }
        Ok(Applied {
            rules: rules(&self.whole),
            input: script,
        })
    }
}

impl Backend for Nftables {
    fn sync<'a>(
        &'a mut self,
        runner: &'a dyn Runner,
        changed: &'a [Change<'a>],
        full: bool,
    ) -> BoxFuture<'a, Result<Applied, ApplyError>> {
        Box::pin(self.apply(runner, changed, full))
    }

    fn invalidate(&mut self) {
        self.fresh = true;
    }
}
