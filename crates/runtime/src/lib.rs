//! Client-side building blocks shared by the controllers and the scheduler, on top of
//! kube-rs's runtime: shared informers (one list/watch and cache per kind, changes
//! broadcast to subscribers), an event recorder with client-go's spam filter, and leader
//! election with Leases.
//!
//! Architecture invariant: everything here talks to the API through kube-rs only; nothing
//! knows a particular controller.

pub mod events;
pub mod informer;
pub mod leader;
