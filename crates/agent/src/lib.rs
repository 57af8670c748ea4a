//! skiff-agent.
