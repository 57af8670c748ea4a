//! skiff-resources.
