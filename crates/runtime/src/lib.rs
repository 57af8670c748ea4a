//! Client-side building blocks shared by the controllers and the scheduler, on top of
//! kube-rs's runtime: shared informers (one list/watch and cache per kind, changes
//! broadcast to subscribers) and an event recorder with client-go's spam filter.
//!
//! Architecture invariant: everything here talks to the API through kube-rs only; nothing
//! knows a particular controller.

pub mod events;
pub mod informer;
