//! Human-written sizes (`10MiB`, `512KiB`, `1000`) and durations (`30s`, `500ms`, `2m`).
//!
//! Pure parsing only; the callers attach the config key to any error.
//!
//! Must not: know config keys, or accept a unit it does not document.

use std::time::Duration;

/// Parses a size such as `10MiB`, `64KiB`, `1GiB`, `10MB`, `500kB` or a bare byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size; write it like `10MiB`, `512KiB` or `1048576`"
        ));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use B, KiB, MiB, GiB, kB, MB or GB"
            ))
        }
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration such as `30s`, `500ms`, `2m`, `1h` or `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let original = text;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration; write it like `30s` or `500ms`".to_string());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, tail) = rest.split_at(split);
        if digits.is_empty() {
            return Err(format!(
                "`{original}` is not a duration; write it like `30s`, `500ms` or `2m`"
            ));
        }
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("`{original}` is too large"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "" => {
                return Err(format!(
                    "`{original}` has no unit; write it like `30s` or `500ms`"
                ))
            }
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{original}`; use ms, s, m or h"
                ))
            }
        };
        total = total.saturating_add(part);
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: &[(&str, Option<u64>)] = &[
        ("10MiB", Some(10 << 20)),
        ("64KiB", Some(64 << 10)),
        ("1GiB", Some(1 << 30)),
        ("1000", Some(1000)),
        ("10MB", Some(10_000_000)),
        (" 5 MiB", Some(5 << 20)),
        ("MiB", None),
        ("10XB", None),
        ("", None),
        ("99999999999999999999GiB", None),
    ];

    #[test]
    fn sizes_parse_or_fail_as_tabled() {
        for (input, expected) in SIZES {
            assert_eq!(parse_size(input).ok(), *expected, "parse_size({input:?})");
        }
    }

    const DURATIONS: &[(&str, Option<u64>)] = &[
        ("30s", Some(30_000)),
        ("500ms", Some(500)),
        ("2m", Some(120_000)),
        ("1h", Some(3_600_000)),
        ("1m30s", Some(90_000)),
        ("30", None),
        ("s", None),
        ("3d", None),
        ("", None),
    ];

    #[test]
    fn durations_parse_or_fail_as_tabled() {
        for (input, expected) in DURATIONS {
            let got = parse_duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *expected, "parse_duration({input:?})");
        }
    }
}
