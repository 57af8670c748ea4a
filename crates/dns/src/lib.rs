//! skiff-dns.
