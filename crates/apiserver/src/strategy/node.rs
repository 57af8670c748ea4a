//! Nodes: registered with their status (`pkg/registry/core/node/strategy.go`).

use super::Strategy;

/// The node strategy.
pub(super) struct Node;

impl Strategy for Node {
    fn has_generation(&self) -> bool {
        false
    }

    /// A node registers with its status (addresses, capacity), so a create keeps it.
    fn keeps_status_on_create(&self) -> bool {
        true
    }
}
