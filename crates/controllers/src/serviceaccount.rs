//! serviceaccount (todo).
