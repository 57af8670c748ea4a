//! Container log files in the CRI format the kubelet reads:
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>` per line, where `P` marks a
//! partial line (its content continues on the next record without a newline).

use chrono::{DateTime, SecondsFormat, Utc};

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in a CRI log record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the agent read the bytes.
    pub time: DateTime<Utc>,
    /// The stream they came from.
    pub stream: Stream,
    /// True for a partial line (`P`): no newline follows the content.
    pub partial: bool,
    /// The content, without the newline.
    pub content: Vec<u8>,
}

/// Formats a timestamp as Kubernetes' RFC3339Nano (trailing zeros kept, `Z`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Turns a chunk of output into CRI records: one `F` record per complete line and a `P`
/// record for a trailing piece without newline.
pub fn encode(time: DateTime<Utc>, stream: Stream, chunk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len() + 48);
    let ts = format_time(time);
    let mut rest = chunk;
    while !rest.is_empty() {
        let (line, partial, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], false, &rest[i + 1..]),
            None => (rest, true, &rest[rest.len()..]),
        };
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.as_str().as_bytes());
        out.extend_from_slice(if partial { b" P " } else { b" F " });
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = next;
    }
    out
}

/// Parses one record (a line of the file, without its newline). Returns None for garbage.
pub fn parse(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        time,
        stream,
        partial,
        content,
    })
}

/// What `kubectl logs` asked for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Prefix each line with its RFC3339Nano timestamp.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<usize>,
}

/// Renders the records of a whole log file as `kubectl logs` shows them: contents
/// joined (partial records continue the line), optional timestamps, tail and since
/// applied. Incomplete trailing data (no newline yet) is ignored; `consumed` returns how
/// many bytes of `file` were used, so a follower can resume after them.
pub fn render(file: &[u8], opts: &LogOptions) -> (Vec<u8>, usize) {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut consumed = 0;
    let mut pos = 0;
    while let Some(nl) = file[pos..].iter().position(|b| *b == b'\n') {
        let raw = &file[pos..pos + nl];
        pos += nl + 1;
        consumed = pos;
        let Some(rec) = parse(raw) else { continue };
        if opts.since.is_some_and(|s| rec.time < s) {
            continue;
        }
        let line = current.get_or_insert_with(|| {
            let mut l = Vec::new();
            if opts.timestamps {
                l.extend_from_slice(format_time(rec.time).as_bytes());
                l.push(b' ');
            }
            l
        });
        line.extend_from_slice(&rec.content);
        if !rec.partial {
            let mut l = current.take().unwrap_or_default();
            l.push(b'\n');
            lines.push(l);
        }
    }
    if let Some(l) = current.take() {
        // A partial record that was never completed is still output (the container may
        // have exited without a final newline).
        lines.push(l);
    }
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out: Vec<u8> = lines.concat();
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit);
    }
    (out, consumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 22, 15, 4).unwrap()
            + chrono::Duration::nanoseconds(123_456_789)
    }

    #[test]
    fn encodes_full_and_partial_lines() {
        let got = encode(t(), Stream::Stdout, b"hello\nwor");
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "2026-11-25T22:15:04.123456789Z stdout F hello\n2026-11-25T22:15:04.123456789Z stdout P wor\n"
        );
    }

    #[test]
    fn parses_records() {
        let r = parse(b"2026-11-25T22:15:04.123456789Z stderr F a b c").unwrap();
        assert_eq!(r.stream, Stream::Stderr);
        assert!(!r.partial);
        assert_eq!(r.content, b"a b c");
        assert_eq!(r.time, t());
        assert!(parse(b"nonsense").is_none());
        let empty = parse(b"2026-11-25T22:15:04.123456789Z stdout F ").unwrap();
        assert!(empty.content.is_empty());
    }

    #[test]
    fn renders_with_tail_timestamps_and_partials() {
        let mut file = encode(t(), Stream::Stdout, b"one\ntw");
        file.extend(encode(t(), Stream::Stdout, b"o\nthree\n"));
        let (out, consumed) = render(&file, &LogOptions::default());
        assert_eq!(out, b"one\ntwo\nthree\n");
        assert_eq!(consumed, file.len());
        let (out, _) = render(
            &file,
            &LogOptions {
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-25T22:15:04.123456789Z three\n"
        );
        let (out, _) = render(
            &file,
            &LogOptions {
                limit_bytes: Some(5),
                ..Default::default()
            },
        );
        assert_eq!(out, b"one\nt");
        let (out, _) = render(
            &file,
            &LogOptions {
                since: Some(t() + chrono::Duration::seconds(1)),
                ..Default::default()
            },
        );
        assert!(out.is_empty());
    }
}
