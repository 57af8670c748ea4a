//! skiff-scheduler.
