//! skiff-cluster.
