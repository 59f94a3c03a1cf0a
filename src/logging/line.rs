//! Hot-path log lines (the access line) formatted straight into the batching writer.
//!
//! `tracing_subscriber`'s formatter walks each field through `dyn Visit`, `fmt::Write` and
//! `io::Write` adapters (a UTF-8 check per fragment): about 24,000 instructions for one access
//! line, more than the rest of a proxied request. This writes the same line, byte for byte in
//! the shape the subscriber gives (text: `TIMESTAMP  INFO target: key=value …`, string values
//! quoted; JSON: `{"timestamp":…,"level":"INFO",fields…,"target":…}`), into a reused buffer, and
//! hands it to the writer in one append. The subscriber's filter still decides: the caller asks
//! `tracing::enabled!` first. Without an installed writer (a test's own subscriber) the caller
//! falls back to a normal `tracing` event.

use super::writer::BatchWriter;
use crate::config::LogFormat;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::OnceLock;

static SINK: OnceLock<(LogFormat, BatchWriter)> = OnceLock::new();

/// Routes [`write`] to `writer` in `format` (called once, by [`super::init`]).
pub(super) fn install(format: LogFormat, writer: BatchWriter) {
    let _ = SINK.set((format, writer));
}

/// One field's value.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// A string recorded as a string: quoted (Rust `Debug` escapes) in text lines.
    Str(&'a str),
    /// A string recorded with `%` (Display): as is in text lines.
    Display(&'a str),
    /// A number.
    U64(u64),
    /// A flag.
    Bool(bool),
    /// An absent optional value: the field is left out, as `tracing` does for `None`.
    None,
}

thread_local! {
    static BUF: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes one INFO line for `target` with `fields`; `false` when no writer is installed (the
/// caller then emits a `tracing` event instead).
pub fn write(target: &str, fields: &[(&str, Value<'_>)]) -> bool {
    let Some((format, writer)) = SINK.get() else {
        return false;
    };
    BUF.with(|buf| {
        let Ok(mut line) = buf.try_borrow_mut() else {
            return false;
        };
        line.clear();
        format_line(&mut line, *format, now_micros(), target, fields);
        // Deferred to the writer thread's next batch on a worker; from any other thread, written
        // at once.
        writer.append(line.as_bytes(), !super::writer::defers_on_this_thread());
        if line.capacity() > 64 * 1024 {
            *line = String::new();
        }
        true
    })
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Formats one line (with its newline) into `out`.
fn format_line(
    out: &mut String,
    format: LogFormat,
    unix_micros: u64,
    target: &str,
    fields: &[(&str, Value<'_>)],
) {
    match format {
        LogFormat::Text => {
            timestamp(out, unix_micros);
            out.push_str("  INFO ");
            out.push_str(target);
            out.push(':');
            for (key, value) in fields {
                let value = match value {
                    Value::None => continue,
                    v => v,
                };
                out.push(' ');
                out.push_str(key);
                out.push('=');
                match value {
                    Value::Str(s) => debug_string(out, s),
                    Value::Display(s) => out.push_str(s),
                    Value::U64(n) => number(out, *n),
                    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Value::None => {}
                }
            }
        }
        LogFormat::Json => {
            out.push_str("{\"timestamp\":\"");
            timestamp(out, unix_micros);
            out.push_str("\",\"level\":\"INFO\"");
            for (key, value) in fields {
                match value {
                    Value::None => continue,
                    Value::Str(s) | Value::Display(s) => {
                        json_key(out, key);
                        json_string(out, s);
                    }
                    Value::U64(n) => {
                        json_key(out, key);
                        number(out, *n);
                    }
                    Value::Bool(b) => {
                        json_key(out, key);
                        out.push_str(if *b { "true" } else { "false" });
                    }
                }
            }
            out.push_str(",\"target\":");
            json_string(out, target);
            out.push('}');
        }
    }
    out.push('\n');
}

/// A string as `{:?}` writes it. Printable ASCII other than `"` and `\` is written as it is,
/// without the formatter (the access line's `decision` is always such a word).
fn debug_string(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

fn json_key(out: &mut String, key: &str) {
    // Keys are the code's own field names: identifiers, never escaped.
    debug_assert!(first_escape(key.as_bytes()).is_none(), "field name {key:?}");
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

/// A JSON string literal (RFC 8259 escapes; control characters as `\u00XX`).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    // Nearly every value (names, paths, scopes) needs no escape: copied whole after one scan.
    while let Some(found) = first_escape(&bytes[start..]) {
        let i = start + found;
        out.push_str(&s[start..i]);
        match bytes[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The index of the first byte a JSON string must escape (a control character, `"` or `\`),
/// eight bytes at a time: a per-byte scan of the access line's values cost more than
/// formatting the rest of the line.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// High bit set in each byte of `w` that is zero (exact for the lowest such byte).
    fn zero_bytes(w: u64) -> u64 {
        w.wrapping_sub(ONES) & !w & HIGHS
    }
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        // Bytes below 0x20: a byte b < 0x20 has b & 0xe0 == 0 (bytes >= 0x80 have the high
        // bit set and fail the test).
        let flagged = zero_bytes(w & u64::from_ne_bytes([0xe0; 8]))
            | zero_bytes(w ^ u64::from_ne_bytes([b'"'; 8]))
            | zero_bytes(w ^ u64::from_ne_bytes([b'\\'; 8]));
        if flagged != 0 {
            // Borrow propagation can flag a byte above a real match: find the first exactly.
            return chunk
                .iter()
                .position(|&b| needs_escape(b))
                .map(|i| offset + i);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| offset + i)
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

thread_local! {
    /// The formatted `YYYY-MM-DDTHH:MM:SS.` of the last second a line was stamped in.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-01T11:03:35.123456Z`, the subscriber's timestamp shape. The date and time of day
/// are formatted once per second per thread.
fn timestamp(out: &mut String, unix_micros: u64) {
    let second = unix_micros / 1_000_000;
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let (y, mo, d, h, mi, s) = crate::util::clock::utc_fields(second * 1000);
            cache.1.clear();
            let _ = write!(cache.1, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.");
            cache.0 = second;
        }
        out.push_str(&cache.1);
    });
    let micros = (unix_micros % 1_000_000) as u32;
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    out.push('Z');
}

fn number(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[(&str, Value<'static>)] = &[
        ("account", Value::Display("default")),
        ("path", Value::Display("/crm/v8/Leads")),
        ("decision", Value::Str("allowed \"x\"")),
        ("upstream_ms", Value::None),
        ("status", Value::U64(200)),
        ("complete", Value::Bool(true)),
    ];

    #[test]
    fn text_lines_have_the_subscribers_shape() {
        let mut out = String::new();
        format_line(
            &mut out,
            LogFormat::Text,
            1_796_112_202_345_678,
            "access",
            FIELDS,
        );
        assert_eq!(
            out,
            "2026-12-01T08:03:22.345678Z  INFO access: account=default path=/crm/v8/Leads \
             decision=\"allowed \\\"x\\\"\" status=200 complete=true\n"
        );
    }

    #[test]
    fn the_word_at_a_time_scan_finds_the_first_byte_to_escape_exactly() {
        // Every byte value at every position of strings up to 19 bytes long (both sides of
        // an eight-byte word), on a background of bytes that need no escape, some >= 0x80.
        for len in 1..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes: Vec<u8> =
                        (0..len).map(|i| [b'a', 0xc3, b'~', b' '][i % 4]).collect();
                    bytes[at] = b;
                    let naive = bytes
                        .iter()
                        .position(|&c| c < 0x20 || c == b'"' || c == b'\\');
                    assert_eq!(first_escape(&bytes), naive, "{bytes:?}");
                }
            }
        }
        assert_eq!(first_escape(b""), None);
        // Two escapes in one word: the first is reported, not one the borrow reached.
        assert_eq!(first_escape(b"ab\x01\"cdefgh"), Some(2));
        let mut out = String::new();
        json_string(&mut out, "0123456789\"abcdef\\\u{7f}\u{1f}é");
        assert_eq!(out, "\"0123456789\\\"abcdef\\\\\u{7f}\\u001fé\"");
    }

    #[test]
    fn text_strings_are_quoted_exactly_as_debug_quotes_them() {
        for s in [
            "allowed",
            "",
            "a b~",
            "it's",
            "say \"hi\"",
            "back\\slash",
            "tab\t",
            "é",
            "\u{7f}",
            "\u{301}x",
        ] {
            let mut out = String::new();
            debug_string(&mut out, s);
            assert_eq!(out, format!("{s:?}"), "{s:?}");
        }
    }

    #[test]
    fn json_lines_parse_with_every_field_and_escape_control_characters() {
        let mut out = String::new();
        let mut fields = FIELDS.to_vec();
        fields.push(("odd", Value::Display("a\u{1}b\n\"c\\")));
        format_line(
            &mut out,
            LogFormat::Json,
            1_796_112_202_345_678,
            "access",
            &fields,
        );
        assert!(out.ends_with("}\n"), "one line: {out}");
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).expect("JSON");
        assert_eq!(v["timestamp"], "2026-12-01T08:03:22.345678Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "access");
        assert_eq!(v["account"], "default");
        assert_eq!(v["decision"], "allowed \"x\"");
        assert_eq!(v["status"], 200);
        assert_eq!(v["complete"], true);
        assert_eq!(v["odd"], "a\u{1}b\n\"c\\");
        assert!(v.get("upstream_ms").is_none(), "absent values are left out");
    }
}
