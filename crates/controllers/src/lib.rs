//! skiff-controllers.
