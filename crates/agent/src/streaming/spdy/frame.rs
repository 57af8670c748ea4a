//! SPDY/3 frames and their wire format: an 8-byte header (control bit, version and type
//! or stream id; flags and a 24-bit length), then the payload. Name/value header blocks
//! are zlib-compressed with the SPDY dictionary as ONE stream per direction and
//! connection, each block ending at a sync flush, so the [`Encoder`] and [`Decoder`]
//! keep their zlib state for the connection's life.

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// FLAG_FIN: the sender's half of the stream is closed after this frame.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL (SYN_STREAM): the recipient may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// SETTINGS id of the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// The largest payload a frame's 24-bit length can carry.
pub const MAX_LENGTH: usize = (1 << 24) - 1;

/// RST_STREAM status codes (SPDY/3 section 2.4.2).
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM: a frame for a stream that is not active.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM: the stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL: the stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// FLOW_CONTROL_ERROR: the peer overran its window.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
}

/// Header name/value pairs; names lowercase, a name may repeat.
pub type Headers = Vec<(String, String)>;

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Per-entry flags (persist / persisted).
    pub flags: u8,
    /// Setting id (24 bits).
    pub id: u32,
    /// Value.
    pub value: u32,
}

/// A decoded SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream.
        stream_id: u32,
        /// Associated stream (server push), 0 if none.
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// FLAG_FIN, FLAG_UNIDIRECTIONAL.
        flags: u8,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream accepted.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why ([`rst`]).
        status: u32,
    },
    /// Connection settings.
    Settings {
        /// 0x01 clears persisted settings.
        flags: u8,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// Liveness check; echoed by the side that did not start it.
    Ping {
        /// Odd from the client, even from the server.
        id: u32,
    },
    /// No new streams; the connection is winding down.
    GoAway {
        /// Last stream id the sender accepted.
        last_good: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// Extra headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Grows a send window (stream 0: the connection's, SPDY/3.1).
    WindowUpdate {
        /// The stream (0: the whole connection).
        stream_id: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// Stream data.
    Data {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The payload.
        data: Bytes,
    },
    /// A control frame of a type this codec does not know (the spec says: ignore).
    Unknown {
        /// Its type.
        kind: u16,
    },
}

/// What can go wrong reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame that does not follow the wire format.
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
    /// A control frame of another SPDY version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// The zlib stream of header blocks is broken.
    #[error("SPDY header block compression: {0}")]
    Zlib(String),
    /// A frame payload longer than 24 bits can say.
    #[error("SPDY frame payload of {0} bytes is too large")]
    TooLarge(usize),
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Writes frames; owns the compressor of this direction's header blocks.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// A fresh encoder for one connection.
    pub fn new() -> Self {
        // Best compression, as Go's spdy framer: header blocks are small and rare.
        let mut zlib = Compress::new(Compression::best(), true);
        // Cannot fail on a fresh stream; an error would surface on the first block.
        let _ = zlib.set_dictionary(&DICTIONARY);
        Encoder { zlib }
    }

    /// Appends the frame's bytes to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_LENGTH {
                    return Err(FrameError::TooLarge(data.len()));
                }
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&length_word(*flags, data.len()));
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.header_block(headers)?;
                let mut p = Vec::with_capacity(10 + block.len());
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 0x07) << 5);
                p.push(0); // credential slot
                p.extend_from_slice(&block);
                control(out, SYN_STREAM, *flags, &p)?;
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.header_block(headers)?;
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&block);
                control(out, SYN_REPLY, *flags, &p)?;
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.header_block(headers)?;
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&block);
                control(out, HEADERS, *flags, &p)?;
            }
            Frame::RstStream { stream_id, status } => {
                control(out, RST_STREAM, 0, &two_words(*stream_id, *status))?;
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for e in entries {
                    p.push(e.flags);
                    p.extend_from_slice(&e.id.to_be_bytes()[1..]);
                    p.extend_from_slice(&e.value.to_be_bytes());
                }
                control(out, SETTINGS, *flags, &p)?;
            }
            Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes())?,
            Frame::GoAway { last_good, status } => {
                control(out, GOAWAY, 0, &two_words(*last_good, *status))?;
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, WINDOW_UPDATE, 0, &two_words(*stream_id, *delta))?;
            }
            Frame::Unknown { .. } => return Err(FrameError::Malformed("cannot encode unknown")),
        }
        Ok(())
    }

    /// Serializes and compresses a name/value block, ending at a sync flush so the peer
    /// can decode it without the blocks that follow.
    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        let raw = raw_header_block(headers);
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start_in = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.zlib
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::Zlib(e.to_string()))?;
            let consumed = (self.zlib.total_in() - start_in) as usize;
            // Done once all input is in and the flush did not fill the buffer.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The uncompressed name/value block: a count, then length-prefixed names and values;
/// repeated names are joined into one value with NUL separators (a peer rejects a name
/// that appears twice).
pub fn raw_header_block(headers: &Headers) -> Vec<u8> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == k) {
            Some((_, existing)) => {
                existing.push('\0');
                existing.push_str(v);
            }
            None => merged.push((k, v.clone())),
        }
    }
    let mut raw = (merged.len() as u32).to_be_bytes().to_vec();
    for (k, v) in &merged {
        raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
        raw.extend_from_slice(k.as_bytes());
        raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
        raw.extend_from_slice(v.as_bytes());
    }
    raw
}

fn length_word(flags: u8, len: usize) -> [u8; 4] {
    let l = (len as u32).to_be_bytes();
    [flags, l[1], l[2], l[3]]
}

fn two_words(a: u32, b: u32) -> [u8; 8] {
    let mut w = [0u8; 8];
    w[..4].copy_from_slice(&(a & 0x7fff_ffff).to_be_bytes());
    w[4..].copy_from_slice(&b.to_be_bytes());
    w
}

fn control(out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]) -> Result<(), FrameError> {
    if payload.len() > MAX_LENGTH {
        return Err(FrameError::TooLarge(payload.len()));
    }
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&length_word(flags, payload.len()));
    out.extend_from_slice(payload);
    Ok(())
}

/// Reads frames; owns the decompressor of the peer's header blocks.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A fresh decoder for one connection.
    pub fn new() -> Self {
        Decoder {
            zlib: Decompress::new(true),
        }
    }

    /// Takes one whole frame off the front of `buf`, or None if it is not all there yet.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let mut p = buf.split_to(len).freeze();
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & 0x7fff_ffff,
                flags,
                data: p,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let need = |p: &Bytes, n: usize| {
            if p.len() < n {
                Err(FrameError::Malformed("control frame too short"))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(&p, 10)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = self.headers(&p)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                need(&p, 4)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&p)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(&p, 8)?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            SETTINGS => {
                need(&p, 4)?;
                let n = p.get_u32() as usize;
                need(&p, n.saturating_mul(8))?;
                let entries = (0..n)
                    .map(|_| {
                        let w = p.get_u32();
                        Setting {
                            flags: (w >> 24) as u8,
                            id: w & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(&p, 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                need(&p, 4)?;
                let last_good = p.get_u32() & 0x7fff_ffff;
                // SPDY/2 peers send no status.
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway { last_good, status }
            }
            WINDOW_UPDATE => {
                need(&p, 8)?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { kind: other },
        };
        Ok(Some(frame))
    }

    /// Inflates one header block (continuing the connection's zlib stream) and parses it.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let mut raw = Vec::with_capacity(compressed.len() * 4 + 64);
        let start_in = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - start_in) as usize;
            if raw.capacity() - raw.len() < 256 {
                raw.reserve(1024);
            }
            let progress = (self.zlib.total_in(), self.zlib.total_out());
            match self
                .zlib
                .decompress_vec(&compressed[consumed..], &mut raw, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| FrameError::Zlib(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(FrameError::Zlib(e.to_string())),
            }
            let consumed = (self.zlib.total_in() - start_in) as usize;
            if consumed == compressed.len() && raw.len() < raw.capacity() {
                break;
            }
            if progress == (self.zlib.total_in(), self.zlib.total_out()) {
                return Err(FrameError::Zlib("header block does not inflate".into()));
            }
        }
        parse_header_block(&raw)
    }
}

/// Parses an uncompressed name/value block; NUL-separated values become repeated names.
pub fn parse_header_block(raw: &[u8]) -> Result<Headers, FrameError> {
    let mut b = raw;
    let word = |b: &mut &[u8]| -> Result<u32, FrameError> {
        if b.len() < 4 {
            return Err(FrameError::Malformed("header block truncated"));
        }
        Ok(b.get_u32())
    };
    let n = word(&mut b)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let nl = word(&mut b)? as usize;
        if b.len() < nl {
            return Err(FrameError::Malformed("header name truncated"));
        }
        let name = String::from_utf8_lossy(&b[..nl]).to_ascii_lowercase();
        b.advance(nl);
        let vl = word(&mut b)? as usize;
        if b.len() < vl {
            return Err(FrameError::Malformed("header value truncated"));
        }
        for v in b[..vl].split(|c| *c == 0) {
            out.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
        b.advance(vl);
    }
    Ok(out)
}

/// The first value of a header (names compare without case).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests;
