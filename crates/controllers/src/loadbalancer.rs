//! loadbalancer (todo).
