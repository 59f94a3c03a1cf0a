//! The one escaper for text that came from a client, the network or a config file and is about
//! to be logged, shown or put in an error message: printable ASCII only (control characters,
//! invisible and bidirectional Unicode, quotes and backslashes escaped), and a bounded length.

/// The cap for a log field (a path, a header value, a name from the network).
pub const LOG_CHARS: usize = 256;

/// `text` with everything but printable ASCII escaped (`\n`, `\u{1b}`, `\u{202e}`), and `"` and
/// `\` too, cut after `max` characters with `…` marking the cut.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut chars = text.chars();
    for c in chars.by_ref().take(max) {
        if !(c.is_ascii_graphic() || c == ' ') || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// [`escape`] with the log field cap.
pub fn log_safe(text: &str) -> String {
    escape(text, LOG_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_bounds_length() {
        assert_eq!(log_safe("a\r\nb"), "a\\r\\nb");
        assert_eq!(log_safe("\u{1b}[31m"), "\\u{1b}[31m");
        assert_eq!(log_safe(&"x".repeat(300)).chars().count(), 257);
        assert_eq!(escape("say \"hi\"", 64), "say \\\"hi\\\"");
        assert_eq!(
            escape("abcdef", 3),
            "abc…",
            "cut after max characters, marked"
        );
        assert_eq!(escape("abc", 3), "abc", "no mark when nothing was cut");
        assert_eq!(
            escape("a\u{202e}b", 8),
            "a\\u{202e}b",
            "bidirectional overrides are escaped"
        );
    }
}
