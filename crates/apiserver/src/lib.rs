//! skiff-apiserver.
