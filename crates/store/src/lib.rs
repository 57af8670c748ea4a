//! skiff-store.
