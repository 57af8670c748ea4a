//! rollout (todo).
