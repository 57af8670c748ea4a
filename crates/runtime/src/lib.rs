//! Client-side building blocks shared by the controllers and the scheduler, on top of
//! kube-rs's runtime: shared informers (one list/watch and cache per kind, changes
//! broadcast to subscribers), an event recorder with client-go's spam filter, leader
//! election with Leases, and tolerant list/watch ([`tolerant`]: an object that does not
//! decode as its type is skipped and logged, not fatal), which the agent, proxy and DNS
//! use too, and the API client itself ([`client`]: one HTTP/2 connection for every request
//! and watch, as client-go's).
//!
//! Architecture invariant: everything here talks to the API through kube-rs only; nothing
//! knows a particular controller.

pub mod client;
pub mod events;
pub mod informer;
pub mod leader;
pub mod tolerant;
