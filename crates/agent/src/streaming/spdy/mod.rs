//! SPDY/3.1, the stream multiplexing kubectl 1.27-1.29 speaks to the kubelet for exec,
//! attach and port-forward (and kubectl 1.30+ still uses for port-forward, tunnelled in
//! WebSocket messages): the frame codec with its zlib-compressed header blocks
//! ([`frame`], [`dictionary`]), the server side of a connection ([`session`]), and the
//! HTTP upgrade handshake that precedes it ([`handshake`]).

pub mod dictionary;
pub mod frame;
pub mod handshake;
pub mod session;

pub use session::{serve, Connection, Stream, StreamReader, StreamWriter};
