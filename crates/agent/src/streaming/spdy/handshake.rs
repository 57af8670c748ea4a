//! The HTTP/1.1 upgrade to SPDY/3.1 (`Connection: Upgrade`, `Upgrade: SPDY/3.1`) and the
//! choice of sub-protocol from the client's `X-Stream-Protocol-Version` headers, as
//! apimachinery's `httpstream.Handshake` makes it.

use http::HeaderMap;

/// The `Upgrade` token.
pub const SPDY_31: &str = "SPDY/3.1";
/// Header naming the sub-protocols the client speaks (one per line or comma separated)
/// and, in the answer, the one chosen.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

/// Whether the request asks to upgrade to SPDY/3.1.
pub fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    has(http::header::CONNECTION, "upgrade") && has(http::header::UPGRADE, SPDY_31)
}

/// The outcome of protocol negotiation.
#[derive(Debug, PartialEq, Eq)]
pub enum Negotiated {
    /// The first protocol of the client's that we support.
    Protocol(&'static str),
    /// The client named no protocol (the oldest one applies, nothing is answered).
    Unspecified,
    /// Nothing in common: the message for the 403 answer.
    Refused(String),
}

/// Picks the sub-protocol: the client's order is its preference.
pub fn negotiate(headers: &HeaderMap, ours: &[&'static str]) -> Negotiated {
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if offered.is_empty() {
        return Negotiated::Unspecified;
    }
    for p in &offered {
        if let Some(ours) = ours.iter().find(|o| **o == p.as_str()) {
            return Negotiated::Protocol(ours);
        }
    }
    // Go's %v of a []string: [a b].
    Negotiated::Refused(format!(
        "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
        offered.join(" "),
        ours.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn detects_the_upgrade() {
        assert!(is_spdy_upgrade(&headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1")
        ])));
        assert!(!is_spdy_upgrade(&headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket")
        ])));
    }

    #[test]
    fn client_order_wins() {
        let ours = ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"];
        let h = headers(&[
            (PROTOCOL_HEADER, "v3.channel.k8s.io"),
            (PROTOCOL_HEADER, "v4.channel.k8s.io"),
        ]);
        assert_eq!(
            negotiate(&h, &ours),
            Negotiated::Protocol("v3.channel.k8s.io")
        );
        let h = headers(&[(PROTOCOL_HEADER, "v9.channel.k8s.io, channel.k8s.io")]);
        assert_eq!(negotiate(&h, &ours), Negotiated::Protocol("channel.k8s.io"));
        assert_eq!(negotiate(&HeaderMap::new(), &ours), Negotiated::Unspecified);
        let h = headers(&[(PROTOCOL_HEADER, "v9.channel.k8s.io")]);
        assert!(
            matches!(negotiate(&h, &ours), Negotiated::Refused(m) if m.contains("unable to negotiate protocol"))
        );
    }
}
