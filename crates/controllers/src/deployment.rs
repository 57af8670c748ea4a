//! deployment (todo).
