//! namespace (todo).
