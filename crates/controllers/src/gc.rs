//! gc (todo).
