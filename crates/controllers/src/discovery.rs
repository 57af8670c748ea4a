//! The API's resource kinds, from discovery: what the garbage collector watches and the
//! namespace controller empties.

use std::collections::HashMap;

use anyhow::Context;
use kube::core::discovery::{verbs, ApiCapabilities, ApiResource, Scope};
use kube::discovery::Discovery;
use kube::Client;

/// One listable resource kind at its preferred version.
#[derive(Clone, Debug)]
pub struct Kind {
    /// Group, version, kind and plural.
    pub ar: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// Verbs it supports.
    pub caps: ApiCapabilities,
}

/// The kinds that support list, watch and delete.
#[derive(Clone, Debug, Default)]
pub struct Kinds {
    /// All of them.
    pub all: Vec<Kind>,
    by_group_kind: HashMap<(String, String), usize>,
}

impl Kinds {
    /// Runs discovery.
    pub async fn discover(client: &Client) -> anyhow::Result<Self> {
        let d = Discovery::new(client.clone())
            .run()
            .await
            .context("API discovery")?;
        let mut kinds = Kinds::default();
        for group in d.groups() {
            for (ar, caps) in group.recommended_resources() {
                if !(caps.supports_operation(verbs::LIST)
                    && caps.supports_operation(verbs::WATCH)
                    && caps.supports_operation(verbs::DELETE))
                {
                    continue;
                }
                if ar.plural.contains('/') {
                    continue;
                }
                kinds
                    .by_group_kind
                    .insert((ar.group.clone(), ar.kind.clone()), kinds.all.len());
                kinds.all.push(Kind {
                    namespaced: matches!(caps.scope, Scope::Namespaced),
                    ar,
                    caps,
                });
            }
        }
        Ok(kinds)
    }

    /// The kind an ownerReference's apiVersion and kind name.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<&Kind> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.by_group_kind
            .get(&(group.to_string(), kind.to_string()))
            .map(|i| &self.all[*i])
    }
}
