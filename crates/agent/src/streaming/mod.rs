//! The kubelet endpoint (:10250) and its streaming protocols: remotecommand (exec,
//! attach) over WebSocket channels or SPDY/3.1 streams, port-forward over WebSocket
//! channels, SPDY/3.1, or SPDY tunnelled in WebSocket messages.

pub mod channel;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod spdy_streams;
pub mod websocket;
