//! Units as crictl prints and reads them: Docker's `go-units` human durations
//! and sizes, Go durations (`2s`, `1m30s`), Go time formats, truncated IDs.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Length of a truncated ID in tables (crictl's `truncatedIDLen`).
pub(crate) const TRUNCATED_ID_LEN: usize = 13;

/// `id` without `prefix`, cut to [`TRUNCATED_ID_LEN`] characters.
pub(crate) fn truncate_id<'a>(id: &'a str, prefix: &str) -> &'a str {
    let id = id.strip_prefix(prefix).unwrap_or(id);
    match id.char_indices().nth(TRUNCATED_ID_LEN) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

/// Docker's `units.HumanDuration`: "Less than a second", "1 second",
/// "About a minute", "3 hours", "2 weeks"...
pub(crate) fn human_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Hours are rounded, as go-units does (`int(d.Hours() + 0.5)`).
    let exact_hours = elapsed.as_secs_f64() / 3600.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let hours = (exact_hours + 0.5) as u64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole_hours = exact_hours as u64;
    format!("{} years", whole_hours / 24 / 365)
}

/// "N unit ago" for a CRI timestamp in nanoseconds, as crictl's tables show
/// `CREATED`; a time in the future counts as "Less than a second".
pub(crate) fn ago(created_at_nanos: i64, now: Timestamp) -> String {
    let elapsed = now
        .as_nanosecond()
        .saturating_sub(i128::from(created_at_nanos))
        .max(0);
    let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
    format!("{} ago", human_duration(Duration::from_nanos(elapsed)))
}

/// Docker's `units.HumanSize`: decimal units, 4 significant digits.
pub(crate) fn human_size(bytes: f64) -> String {
    human_size_with_precision(bytes, 4)
}

/// Docker's `units.HumanSizeWithPrecision`: decimal units (`kB`, `MB`...)
/// and Go's `%.*g` for the number.
pub(crate) fn human_size_with_precision(bytes: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_g(size, precision), UNITS[unit])
}

/// Go's `%.{precision}g`: `precision` significant digits, trailing zeros
/// dropped, exponent form (`1e+03`) when the exponent is below -4 or not
/// below the precision.
pub(crate) fn format_g(value: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if value == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` rounds to the requested digits and gives the exponent.
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` output has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let precision_i32 = i32::try_from(precision).unwrap_or(i32::MAX);
    if exponent < -4 || exponent >= precision_i32 {
        let mantissa = trim_fraction(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let decimals = usize::try_from(precision_i32 - 1 - exponent).unwrap_or(0);
    trim_fraction(&format!("{value:.decimals$}")).to_owned()
}

fn trim_fraction(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// Parses a Go duration (`time.ParseDuration`): `300ms`, `-1.5h`, `2h45m`,
/// or a bare `0`. Returns signed nanoseconds; the error reads like Go's.
pub(crate) fn parse_go_duration(text: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("time: unknown unit {other:?} in duration {text:?}")),
        };
        total += value * scale;
    }
    if total > 9.3e18 {
        return Err(invalid());
    }
    #[allow(clippy::cast_possible_truncation)]
    let nanos = total.round() as i128;
    Ok(if negative { -nanos } else { nanos })
}

/// A Go duration flag value as an unsigned [`Duration`]; negative values
/// become zero.
pub(crate) fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    let nanos = parse_go_duration(text)?;
    Ok(Duration::from_nanos(
        u64::try_from(nanos.max(0)).unwrap_or(u64::MAX),
    ))
}

/// A CRI timestamp (nanoseconds since the epoch) in the local time zone.
fn zoned(nanos: i64) -> jiff::Zoned {
    Timestamp::from_nanosecond(i128::from(nanos))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::system())
}

fn fraction(nanos: i32) -> String {
    if nanos == 0 {
        return String::new();
    }
    let digits = format!(".{nanos:09}");
    digits.trim_end_matches('0').to_owned()
}

/// Go's `time.Unix(0, nanos).Format(time.RFC3339Nano)`, in the local zone.
pub(crate) fn rfc3339_nano(nanos: i64) -> String {
    rfc3339_nano_in(&zoned(nanos))
}

/// Go's zero `time.Time` in RFC 3339, which crictl prints for times not set.
pub(crate) const GO_ZERO_TIME_RFC3339: &str = "0001-01-01T00:00:00Z";

fn rfc3339_nano_in(time: &jiff::Zoned) -> String {
    let offset = time.offset().seconds();
    let zone = if offset == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let offset = offset.abs();
        format!("{sign}{:02}:{:02}", offset / 3600, offset % 3600 / 60)
    };
    format!(
        "{}{}{zone}",
        time.strftime("%Y-%m-%dT%H:%M:%S"),
        fraction(time.subsec_nanosecond())
    )
}

/// Go's `time.Time.String()` of `time.Unix(0, nanos)`:
/// `2006-01-02 15:04:05.999999999 -0700 MST`, in the local zone.
pub(crate) fn go_time_string(nanos: i64) -> String {
    go_time_string_in(&zoned(nanos))
}

fn go_time_string_in(time: &jiff::Zoned) -> String {
    format!(
        "{}{} {}",
        time.strftime("%Y-%m-%d %H:%M:%S"),
        fraction(time.subsec_nanosecond()),
        time.strftime("%z %Z")
    )
}

/// Parses `logs --since` as Docker's `timetypes.GetTimestamp` does: a Go
/// duration back from `now` (`42m`), an RFC 3339 time with a zone
/// (`2013-01-02T13:23:37Z`), a local date or date-time (`2013-01-02`,
/// `2013-01-02T13:23`), or Unix seconds (`1700000000.5`).
pub(crate) fn parse_since(value: &str, now: Timestamp) -> Result<Timestamp, String> {
    if value != "0"
        && let Ok(nanos) = parse_go_duration(value)
    {
        let since = now
            .as_nanosecond()
            .checked_sub(nanos)
            .and_then(|n| Timestamp::from_nanosecond(n).ok())
            .ok_or_else(|| format!("--since {value:?} is out of range"))?;
        // Docker keeps whole seconds for relative times.
        return Timestamp::from_second(since.as_second()).map_err(|e| e.to_string());
    }
    let has_zone = value.contains(['z', 'Z', '+']) || value.matches('-').count() == 3;
    if value.contains('-') {
        let parsed = if has_zone {
            value
                .parse::<Timestamp>()
                .map_err(|e| format!("parsing time {value:?}: {e}"))
        } else {
            parse_local(value)
        };
        return parsed;
    }
    parse_unix(value).ok_or_else(|| format!("failed to parse value as time or duration: {value:?}"))
}

fn parse_local(value: &str) -> Result<Timestamp, String> {
    let civil = if value.contains('T') {
        // Docker accepts `2006-01-02T15` (an hour alone) too.
        let full = if value.matches(':').count() == 0 {
            format!("{value}:00")
        } else {
            value.to_owned()
        };
        full.parse::<jiff::civil::DateTime>()
            .map_err(|e| format!("parsing time {value:?}: {e}"))?
    } else {
        value
            .parse::<jiff::civil::Date>()
            .map_err(|e| format!("parsing time {value:?}: {e}"))?
            .to_datetime(jiff::civil::Time::midnight())
    };
    civil
        .to_zoned(TimeZone::system())
        .map(|z| z.timestamp())
        .map_err(|e| format!("parsing time {value:?}: {e}"))
}

fn parse_unix(value: &str) -> Option<Timestamp> {
    let (seconds, nanos) = match value.split_once('.') {
        Some((s, n)) => {
            if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let scaled = format!("{n:0<9}");
            (s, scaled.parse::<i32>().ok()?)
        }
        None => (value, 0),
    };
    if seconds.is_empty()
        || !seconds
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seconds: i64 = seconds.parse().ok()?;
    Timestamp::new(seconds, nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cut_to_13_characters_after_the_prefix() {
        let id = "85262e6d58038868b77b8891778aab7a872ed0b32ee1d0439622ad072eea56f1";
        assert_eq!(truncate_id(id, ""), "85262e6d58038");
        assert_eq!(
            truncate_id(&format!("sha256:{id}"), "sha256:"),
            "85262e6d58038"
        );
        assert_eq!(truncate_id("short", ""), "short");
        assert_eq!(truncate_id("", "sha256:"), "");
    }

    #[test]
    fn human_durations_match_go_units() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (59 * 60 + 59, "59 minutes"),
            (3600, "About an hour"),
            (3600 + 29 * 60, "About an hour"),
            (3600 + 30 * 60, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (13 * 24 * 3600, "13 days"),
            (14 * 24 * 3600, "2 weeks"),
            (59 * 24 * 3600, "8 weeks"),
            (60 * 24 * 3600, "2 months"),
            (729 * 24 * 3600, "24 months"),
            (730 * 24 * 3600, "2 years"),
        ];
        for (seconds, text) in cases {
            assert_eq!(
                human_duration(Duration::from_secs(seconds)),
                text,
                "{seconds}s"
            );
        }
        assert_eq!(
            human_duration(Duration::from_millis(999)),
            "Less than a second"
        );
    }

    #[test]
    fn ago_counts_from_now_and_clamps_future_times() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        assert_eq!(ago(1_700_000_000_000_000_000, now), "About a minute ago");
        assert_eq!(ago(1_700_000_095_000_000_000, now), "5 seconds ago");
        assert_eq!(
            ago(1_800_000_000_000_000_000, now),
            "Less than a second ago"
        );
    }

    #[test]
    fn human_sizes_match_go_units() {
        assert_eq!(human_size_with_precision(0.0, 3), "0B");
        assert_eq!(human_size_with_precision(999.0, 3), "999B");
        assert_eq!(human_size_with_precision(1000.0, 3), "1kB");
        assert_eq!(human_size_with_precision(1_234_567.0, 3), "1.23MB");
        assert_eq!(human_size_with_precision(12_345_678.0, 3), "12.3MB");
        assert_eq!(human_size_with_precision(123_456_789.0, 3), "123MB");
        assert_eq!(human_size_with_precision(1_500_000.0, 3), "1.5MB");
        // Go's %g switches to exponent form when rounding reaches 10^precision.
        assert_eq!(human_size_with_precision(999_600.0, 3), "1e+03kB");
        assert_eq!(human_size(4_096.0), "4.096kB");
        assert_eq!(human_size(53_727_232.0), "53.73MB");
    }

    #[test]
    fn format_g_follows_go() {
        assert_eq!(format_g(0.000_012_34, 3), "1.23e-05");
        assert_eq!(format_g(0.001_234, 3), "0.00123");
        assert_eq!(format_g(100.0, 3), "100");
        assert_eq!(format_g(2.0, 4), "2");
    }

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        assert_eq!(parse_go_duration("2s"), Ok(2_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_go_duration("10us"), Ok(10_000));
        assert_eq!(parse_go_duration("-42m"), Ok(-2_520_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(
            parse_go_duration("10"),
            Err("time: missing unit in duration \"10\"".into())
        );
        assert_eq!(
            parse_go_duration("1d"),
            Err("time: unknown unit \"d\" in duration \"1d\"".into())
        );
        assert_eq!(
            parse_go_duration(""),
            Err("time: invalid duration \"\"".into())
        );
        assert_eq!(
            parse_go_duration("s"),
            Err("time: invalid duration \"s\"".into())
        );
        assert_eq!(parse_duration_flag("-5s"), Ok(Duration::ZERO));
    }

    #[test]
    fn go_time_formats() {
        let utc = Timestamp::from_nanosecond(1_700_000_000_120_000_000)
            .unwrap()
            .to_zoned(TimeZone::UTC);
        assert_eq!(rfc3339_nano_in(&utc), "2023-11-14T22:13:20.12Z");
        assert_eq!(go_time_string_in(&utc), "2023-11-14 22:13:20.12 +0000 UTC");
        let whole = Timestamp::from_second(0).unwrap().to_zoned(TimeZone::UTC);
        assert_eq!(rfc3339_nano_in(&whole), "1970-01-01T00:00:00Z");
        let east = Timestamp::from_second(0)
            .unwrap()
            .to_zoned(TimeZone::fixed(jiff::tz::offset(2)));
        assert_eq!(rfc3339_nano_in(&east), "1970-01-01T02:00:00+02:00");
    }

    #[test]
    fn since_accepts_durations_times_and_unix_seconds() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(
            parse_since("42m", now).unwrap(),
            Timestamp::from_second(1_700_000_000 - 42 * 60).unwrap()
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now).unwrap(),
            Timestamp::from_second(1_700_000_000).unwrap()
        );
        assert_eq!(
            parse_since("2023-11-14T23:13:20+01:00", now).unwrap(),
            Timestamp::from_second(1_700_000_000).unwrap()
        );
        assert_eq!(
            parse_since("1700000000.5", now).unwrap(),
            Timestamp::new(1_700_000_000, 500_000_000).unwrap()
        );
        assert!(parse_since("2023-11-14", now).is_ok());
        assert!(parse_since("2023-11-14T22:13", now).is_ok());
        assert!(parse_since("2023-11-14T22", now).is_ok());
        assert_eq!(
            parse_since("yesterday", now),
            Err("failed to parse value as time or duration: \"yesterday\"".into())
        );
        assert!(parse_since("2023-13-14", now).is_err());
    }
}
