//! The remotecommand channel protocols over WebSocket (`channel.k8s.io`,
//! `v4.channel.k8s.io`, `v5.channel.k8s.io`): every binary message starts with one byte
//! naming the stream, and the status and exit code travel as a metav1 Status on stream 3.

use serde_json::json;

/// Stream number of the process's stdin.
pub const STDIN: u8 = 0;
/// Stream number of the process's stdout.
pub const STDOUT: u8 = 1;
/// Stream number of the process's stderr.
pub const STDERR: u8 = 2;
/// Stream number of the error/status channel.
pub const ERROR: u8 = 3;
/// Stream number of terminal resize events.
pub const RESIZE: u8 = 4;
/// First byte of a v5 close message: `[255, stream]` closes that stream.
pub const CLOSE: u8 = 255;

/// remotecommand sub-protocols, most preferred first.
pub const PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "channel.k8s.io",
];

/// The port-forward sub-protocols.
pub const PORT_FORWARD_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "portforward.k8s.io"];

/// Picks the first protocol of ours that the client offered (`Sec-WebSocket-Protocol`,
/// comma separated).
pub fn negotiate(offered: &str, ours: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    ours.iter().copied().find(|p| offered.contains(p))
}

/// Frames data for a stream.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(stream);
    v.extend_from_slice(data);
    v
}

/// What a client message means.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Bytes for stdin.
    Stdin(&'a [u8]),
    /// A terminal resize (JSON `{"Width":..,"Height":..}`).
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// v5: the client closed a stream (stdin: no more input).
    Close(u8),
    /// Anything else (ignored).
    Other,
}

/// Decodes a binary client message.
pub fn decode(msg: &[u8]) -> Incoming<'_> {
    match msg.split_first() {
        Some((&STDIN, rest)) => Incoming::Stdin(rest),
        Some((&RESIZE, rest)) => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            match serde_json::from_slice::<Size>(rest) {
                Ok(s) => Incoming::Resize {
                    width: s.width,
                    height: s.height,
                },
                Err(_) => Incoming::Other,
            }
        }
        Some((&CLOSE, [stream])) => Incoming::Close(*stream),
        _ => Incoming::Other,
    }
}

/// The Status sent on stream 3 when the command ended: Success for exit code 0, else
/// Failure with reason NonZeroExitCode and the code as an ExitCode cause (what kubectl
/// turns into its own exit code).
pub fn exit_status(code: i32) -> String {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"}).to_string();
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command, exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
    })
    .to_string()
}

/// A Failure Status for an internal error (the command could not run at all).
pub fn error_status(message: &str) -> String {
    json!({"metadata": {}, "status": "Failure", "message": message}).to_string()
}

/// The first frame of a port-forward channel: the stream number then the port, little
/// endian.
pub fn port_header(stream: u8, port: u16) -> Vec<u8> {
    let p = port.to_le_bytes();
    vec![stream, p[0], p[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_preferred() {
        assert_eq!(
            negotiate("v4.channel.k8s.io, v5.channel.k8s.io", &PROTOCOLS),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            negotiate("channel.k8s.io", &PROTOCOLS),
            Some("channel.k8s.io")
        );
        assert_eq!(negotiate("SPDY/3.1", &PROTOCOLS), None);
    }

    #[test]
    fn frames_and_decodes() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(decode(&[0, b'x']), Incoming::Stdin(b"x"));
        assert_eq!(decode(&[255, 0]), Incoming::Close(0));
        assert_eq!(
            decode(b"\x04{\"Width\":80,\"Height\":24}"),
            Incoming::Resize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(decode(&[]), Incoming::Other);
        assert_eq!(port_header(1, 8080), vec![1, 0x90, 0x1f]);
    }

    #[test]
    fn statuses() {
        assert_eq!(exit_status(0), r#"{"metadata":{},"status":"Success"}"#);
        let v: serde_json::Value = serde_json::from_str(&exit_status(3)).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
    }
}
