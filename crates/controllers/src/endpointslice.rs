//! endpointslice (todo).
