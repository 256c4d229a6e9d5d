//! Durations and sizes as the configuration writes them (SPEC 10): `15s`, `500ms`, `2m`, `1h`, a
//! bare `0`; `4096`, `512B`, `64KiB`, `1MiB`, `2GiB`. Pure string functions: no YAML, no key
//! names. The error strings say what was found and what is expected; the caller prefixes the key.

use std::time::Duration;

const DURATION_EXPECTED: &str = "expected an integer followed by ms, s, m or h";
const SIZE_EXPECTED: &str = "expected an integer optionally followed by B, KiB, MiB or GiB";

/// Parses a duration: an integer followed by `ms`, `s`, `m` or `h`, or a bare `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {s:?}: {DURATION_EXPECTED}");
    let (digits, unit) = split_number(s).ok_or_else(invalid)?;
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let too_large = || format!("invalid duration {s:?}: too large");
    match unit {
        // A bare number is ambiguous (seconds? milliseconds?) unless it is zero.
        "" if n == 0 => Ok(Duration::ZERO),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        _ => Err(invalid()),
    }
}

/// Parses a size in bytes: an integer optionally followed by `B`, `KiB`, `MiB` or `GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {s:?}: {SIZE_EXPECTED}");
    let (digits, unit) = split_number(s).ok_or_else(invalid)?;
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let shift = match unit {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(invalid()),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// Splits `123abc` into `("123", "abc")`; `None` when there is no leading digit.
fn split_number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_refuse_other_spellings() {
        for bad in [
            "", "15", "15 s", "15 sec", "s", "-5s", "+5s", "1.5s", "15S", "1d", " 5s", "5s ",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("expected an integer followed by ms, s, m or h"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            parse_duration("15 sec").unwrap_err(),
            r#"invalid duration "15 sec": expected an integer followed by ms, s, m or h"#
        );
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("9999999999999999999h")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
    }

    #[test]
    fn sizes_refuse_other_spellings() {
        for bad in [
            "", "KiB", "1KB", "1kib", "1 KiB", "1.5MiB", "-1", "1M", "1TiB",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(
                err.contains("optionally followed by B, KiB, MiB or GiB"),
                "{bad}: {err}"
            );
        }
        assert!(parse_size("99999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }
}
