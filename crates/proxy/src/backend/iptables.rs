//! The iptables backend: keeps each service port's rules ([`Ruleset`] fragments) and
//! writes them with `iptables-restore --noflush`: a full sync rewrites every KUBE-* chain
//! (in several transactions) and deletes the service chains it no longer needs, then
//! ensures the canary chains and the jumps from the built-in chains; a partial sync
//! rewrites only the changed ports' chains (KEP-3453).

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{Applied, Backend};
use crate::apply;
use crate::iptables::{self, Ruleset};
use crate::model::{Change, RuleConfig, ServicePortName};
use crate::runner::{ApplyError, Runner};

/// Rules of the static chains (filter: KUBE-FORWARD..., nat: KUBE-SERVICES...) that are
/// not in any fragment, counted in the metrics as kube-proxy counts them.
const STATIC_RULES: (usize, usize) = (3, 7);

/// iptables mode's state.
#[derive(Debug)]
pub struct Iptables {
    cfg: RuleConfig,
    /// Each service port's rules as last generated (and, if the last sync succeeded,
    /// applied).
    frags: BTreeMap<ServicePortName, Ruleset>,
}

impl Iptables {
    /// A backend that has written nothing yet.
    pub fn new(cfg: RuleConfig) -> Iptables {
        Iptables {
            cfg,
            frags: BTreeMap::new(),
        }
    }

    async fn apply(
        &mut self,
        runner: &dyn Runner,
        changed: &[Change<'_>],
        full: bool,
    ) -> Result<Applied, ApplyError> {
        let mut pairs: Vec<(Option<Ruleset>, Option<Ruleset>)> = Vec::new();
        for (old, new) in changed {
            let Some(name) = old.or(*new).map(|sp| &sp.name) else {
                continue;
            };
            let before = self.frags.remove(name);
            let after = new.map(|sp| iptables::port_rules(sp, &self.cfg));
            if let Some(a) = &after {
                self.frags.insert(name.clone(), a.clone());
            }
            pairs.push((before, after));
        }
        let input = if full {
            // Chains left by an earlier run (or by services deleted while we were down).
            // One look at the kernel: chains left by an earlier run (or by services
            // deleted while we were down), and which canaries and jumps exist.
            let saved = apply::iptables_save_all(runner).await?;
            let existing = iptables::saved_chains(&saved, "nat");
            let mut txs = iptables::render_full(self.frags.values(), &existing, &self.cfg);
            // Last: the jumps need their target chains.
            txs.extend(iptables::render_base(&saved));
            for t in &txs {
                apply::iptables_restore(runner, t).await?;
            }
            txs.concat()
        } else {
            let refs: Vec<(Option<&Ruleset>, Option<&Ruleset>)> = pairs
                .iter()
                .map(|(a, b)| (a.as_ref(), b.as_ref()))
                .collect();
            let input = iptables::render_partial(&refs);
            if !input.is_empty() {
                apply::iptables_restore(runner, &input).await?;
            }
            input
        };
        let (mut filter, mut nat) = STATIC_RULES;
        for f in self.frags.values() {
            filter += f.filter.rule_count();
            nat += f.nat.rule_count();
        }
        Ok(Applied {
            input,
            rules: vec![("filter".to_string(), filter), ("nat".to_string(), nat)],
        })
    }
}

impl Backend for Iptables {
    fn sync<'a>(
        &'a mut self,
        runner: &'a dyn Runner,
        changed: &'a [Change<'a>],
        full: bool,
    ) -> BoxFuture<'a, Result<Applied, ApplyError>> {
        Box::pin(self.apply(runner, changed, full))
    }

    fn flushed<'a>(&'a self, runner: &'a dyn Runner) -> BoxFuture<'a, Result<bool, ApplyError>> {
        Box::pin(async move { Ok(!apply::canaries_present(runner).await?) })
    }
}
