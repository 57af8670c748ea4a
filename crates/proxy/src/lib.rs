//! skiff-proxy.
