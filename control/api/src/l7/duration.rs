//! Durations as routes write them: Gateway API (`10s`, `500ms`, `1h30m`) and Istio / protobuf
//! JSON (`0.5s`, `1.5s`).

use std::time::Duration;

/// Longest duration accepted anywhere in a route (a guard against typos such as `99999h`).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a sequence of `<number><unit>` with units `h`, `m`, `s`, `ms`, `us`; numbers may have
/// a fraction (`0.5s`). The error says what a valid value looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration; write e.g. 500ms, 10s, 1m30s or 0.5s (units h, m, s, ms)"
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "{text:?} is longer than the {}h limit",
            MAX_DURATION.as_secs() / 3600
        ));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_api_and_istio_forms_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("0.5s"), Ok(ms(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1s500ms"), Ok(ms(1500)));
    }

    #[test]
    fn invalid_durations_are_explained() {
        for bad in ["", "10", "s", "10x", "1.2.3s", "-1s", "1 s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
        assert!(parse_duration("100h").unwrap_err().contains("limit"));
    }
}
