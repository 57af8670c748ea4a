//! Unit tests of SPDY/3.1 frame encoding and decoding.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A port-forward error stream's SYN_STREAM then the SYN_REPLY that follows on the same
/// zlib stream, as C zlib (level 9, the SPDY/3 dictionary, sync flush) compresses them:
/// the dictionary id e3c6a7c2 sits in the zlib header of the first block.
const GOLDEN_SYN_STREAM: &str = concat!(
    "80030001", // control, version 3, SYN_STREAM
    "0000003c", // flags 0, length 60
    "00000001", // stream 1
    "00000000", // associated to none
    "0000",     // priority 0, slot 0
    "78f9e3c6a7c202253a48f95b044aab4c16064092b308125b99a054cc68004e8725",
    "45a989b9d0a2863515141100000000ffff",
);
const GOLDEN_SYN_REPLY: &str = concat!(
    "80030002", // control, version 3, SYN_REPLY
    "0000000d", // flags 0, length 13
    "00000001", // stream 1
    "02321800000000ffff",
);

fn golden_headers() -> Headers {
    h(&[("port", "80"), ("requestid", "0"), ("streamtype", "error")])
}

#[test]
fn encodes_syn_stream_golden() {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    enc.encode(
        &Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: golden_headers(),
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex(GOLDEN_SYN_STREAM));
    out.clear();
    enc.encode(
        &Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: vec![],
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex(GOLDEN_SYN_REPLY));
}

#[test]
fn decodes_golden_and_split_input() {
    let mut dec = Decoder::new();
    let all = [hex(GOLDEN_SYN_STREAM), hex(GOLDEN_SYN_REPLY)].concat();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // Fed a byte at a time: a frame is only decoded once it is whole.
    for b in all {
        buf.extend_from_slice(&[b]);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(
        frames,
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: golden_headers(),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            }
        ]
    );
    assert!(buf.is_empty());
}

#[test]
fn every_frame_round_trips() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 3,
            associated_to: 0,
            priority: 7,
            flags: FLAG_FIN,
            headers: h(&[("streamtype", "stdin")]),
        },
        Frame::SynReply {
            stream_id: 3,
            flags: FLAG_FIN,
            headers: h(&[("a", "1"), ("a", "2")]),
        },
        Frame::Headers {
            stream_id: 3,
            flags: 0,
            headers: h(&[("x-long", &"v".repeat(5000))]),
        },
        Frame::RstStream {
            stream_id: 5,
            status: rst::CANCEL,
        },
        Frame::Settings {
            flags: 1,
            entries: vec![Setting {
                flags: 1,
                id: SETTINGS_INITIAL_WINDOW_SIZE,
                value: 1 << 20,
            }],
        },
        Frame::Ping { id: 7 },
        Frame::GoAway {
            last_good: 9,
            status: 0,
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 65536,
        },
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 3,
            flags: 0,
            data: Bytes::new(),
        },
    ];
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    for f in &frames {
        enc.encode(f, &mut wire).unwrap();
    }
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&wire[..]);
    let mut got = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        got.push(f);
    }
    assert_eq!(got, frames);
}

#[test]
fn fixed_layouts() {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    enc.encode(&Frame::Ping { id: 1 }, &mut out).unwrap();
    assert_eq!(out, hex("800300060000000400000001"));
    out.clear();
    enc.encode(
        &Frame::WindowUpdate {
            stream_id: 1,
            delta: 10,
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex("8003000900000008000000010000000a"));
    out.clear();
    enc.encode(
        &Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hi"),
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex("00000001010000026869"));
    out.clear();
    enc.encode(
        &Frame::GoAway {
            last_good: 5,
            status: 0,
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex("80030007000000080000000500000000"));
}

#[test]
fn repeated_names_are_joined_and_split() {
    let raw = raw_header_block(&h(&[("A", "1"), ("a", "2")]));
    assert_eq!(
        raw,
        hex("0000000100000001610000000331003200")
            .split_last()
            .unwrap()
            .1
    );
    assert_eq!(
        parse_header_block(&raw).unwrap(),
        h(&[("a", "1"), ("a", "2")])
    );
}

#[test]
fn rejects_other_versions_and_truncation() {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&hex("800200060000000400000001")[..]);
    assert!(matches!(dec.decode(&mut buf), Err(FrameError::Version(2))));
    assert!(parse_header_block(&hex("0000000100000005ab")).is_err());
}

/// What kubectl 1.27 (Go's compress/flate, BestCompression) sent for `exec -i` with
/// stdin at EOF, captured on the wire: SYN_STREAMs for the error, stdin, stdout and stderr
/// streams (one zlib stream across the four header blocks), then stdin's FIN.
const KUBECTL_127_EXEC: &str = concat!(
    "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a",
    "0a0a6800000000ffff",
    "800300010000001700000003000000000000c22e555c92929907000000ffff",
    "800300010000001900000005000000000000c22ac5565c92925f5a02000000ffff",
    "800300010000001500000007000000000000c229975a5404000000ffff",
    "0000000301000000",
);

#[test]
fn decodes_what_kubectl_sends() {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&hex(KUBECTL_127_EXEC)[..]);
    let mut got = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        got.push(f);
    }
    let syn = |id: u32, kind: &str| Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        flags: 0,
        headers: h(&[("streamtype", kind)]),
    };
    assert_eq!(
        got,
        vec![
            syn(1, "error"),
            syn(3, "stdin"),
            syn(5, "stdout"),
            syn(7, "stderr"),
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new()
            },
        ]
    );
}
