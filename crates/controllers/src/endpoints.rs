//! endpoints (todo).
