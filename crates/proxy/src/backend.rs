//! The dataplane behind the engine: a [`Backend`] turns changed service ports into
//! kernel commands, keeping what it last generated so that a partial sync writes only
//! what changed. [`Iptables`] (`iptables-restore` input, per-port fragments) and
//! [`Nftables`] (`nft -f` scripts, per-port parts of the table, endpoint picks, the
//! whole table as applied, chains left for the next full sync) each own their state;
//! [`crate::sync::Engine`] decides when a sync is full and holds one of them.
//!
//! Backends generate with [`crate::iptables`] / [`crate::nft`] (pure) and run commands
//! only through [`crate::apply`] over a [`Runner`].

mod iptables;
mod nftables;

pub use self::iptables::Iptables;
pub use self::nftables::Nftables;

use std::fmt;

use futures::future::BoxFuture;

use crate::model::{Change, RuleConfig};
use crate::runner::{ApplyError, Runner};
use crate::ProxyMode;

/// What one sync wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The restore input / nft script, all transactions concatenated ("" if nothing
    /// needed writing).
    pub input: String,
    /// Rules per table after the sync, for the `sync_proxy_rules_*_total` metrics.
    pub rules: Vec<(String, usize)>,
}

/// One way of programming service ports into the kernel, with what it last generated.
pub trait Backend: Send + fmt::Debug {
    /// Programs the `changed` service ports (`(before, after)`, as [`crate::model::changes`]
    /// gives them). `full` rewrites everything the backend owns; otherwise only what the
    /// changes touch is written. The backend's state follows the changes whether or
    /// not the commands succeed: after an error the engine calls
    /// [`Backend::invalidate`] and the next sync is full.
    fn sync<'a>(
        &'a mut self,
        runner: &'a dyn Runner,
        changed: &'a [Change<'a>],
        full: bool,
    ) -> BoxFuture<'a, Result<Applied, ApplyError>>;

    /// The kernel may not hold what the backend last wrote (a sync failed, or someone
    /// flushed the rules): the next sync starts from scratch where that differs from a
    /// full sync (nftables recreates its table).
    fn invalidate(&mut self) {}

    /// Whether the rules were flushed behind the proxy's back (iptables: the canary
    /// chains are gone), to be checked periodically. By default, never.
    fn flushed<'a>(&'a self, _runner: &'a dyn Runner) -> BoxFuture<'a, Result<bool, ApplyError>> {
        Box::pin(async { Ok(false) })
    }
}

/// The backend of a proxy mode.
pub fn for_mode(mode: ProxyMode, cfg: RuleConfig) -> Box<dyn Backend> {
    match mode {
        ProxyMode::Iptables => Box::new(Iptables::new(cfg)),
        ProxyMode::Nftables => Box::new(Nftables::new(cfg)),
    }
}
