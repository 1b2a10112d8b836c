//! RFC 3339 timestamps (`2026-12-01T09:00:00Z`, `…+01:00`, fractional
//! seconds) to Unix milliseconds, without a date crate: experiments only
//! need to compare a start/stop with "now".

/// Parses an RFC 3339 `date-time` into milliseconds since the Unix epoch
/// (UTC). Accepts `T`/`t`/space between date and time, `Z`/`z` or
/// `±HH:MM` offsets, and any number of fraction digits (truncated to
/// milliseconds). A leap second (`:60`) counts as the first second of the
/// next minute. The error says what is wrong.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let expect = |i: usize, c: u8, what: &str| -> Result<(), String> {
        if b.get(i) == Some(&c) {
            Ok(())
        } else {
            Err(format!("expected {what} at character {}", i + 1))
        }
    };
    let num = |from: usize, len: usize, what: &str| -> Result<u32, String> {
        let digits = b
            .get(from..from + len)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("expected {len} digits of {what} at character {}", from + 1))?;
        Ok(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let year = num(0, 4, "year")?;
    expect(4, b'-', "`-`")?;
    let month = num(5, 2, "month")?;
    expect(7, b'-', "`-`")?;
    let day = num(8, 2, "day")?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return Err("expected `T` and a time after the date (e.g. 2026-12-01T09:00:00Z)".into());
    }
    let hour = num(11, 2, "hour")?;
    expect(13, b':', "`:`")?;
    let minute = num(14, 2, "minute")?;
    expect(16, b':', "`:`")?;
    let second = num(17, 2, "second")?;
    let mut i = 19;
    let mut millis = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err("expected digits after `.`".into());
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1, 2, "offset hours")?;
            expect(i + 3, b':', "`:` in the offset")?;
            let om = num(i + 4, 2, "offset minutes")?;
            if oh > 23 || om > 59 {
                return Err(format!("offset {} is out of range", &s[i..i + 6]));
            }
            i += 6;
            let m = i64::from(oh * 60 + om);
            if sign == b'-' { -m } else { m }
        }
        _ => return Err("expected a time zone: `Z` or an offset like +01:00".into()),
    };
    if i != b.len() {
        return Err(format!(
            "unexpected text after the time zone at character {}",
            i + 1
        ));
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("{year:04}-{month:02} has no day {day}"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "time {hour:02}:{minute:02}:{second:02} is out of range"
        ));
    }
    let days = days_from_civil(i64::from(year), month, day);
    let seconds =
        days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    Ok(seconds * 1000 + i64::from(millis))
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // Reference values from Python: datetime.fromisoformat(s).timestamp() * 1000.
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-12-01T09:00:00Z", 1_796_115_600_000),
            ("2026-12-01T10:00:00+01:00", 1_796_115_600_000),
            ("2026-11-30T23:30:00-09:30", 1_796_115_600_000),
            ("2000-02-29T12:34:56.789Z", 951_827_696_789),
            ("2000-02-29t12:34:56.7z", 951_827_696_700),
            ("2000-02-29 12:34:56.123456789Z", 951_827_696_123),
            ("1969-12-31T23:59:59Z", -1000),
            ("2016-12-31T23:59:60Z", 1_483_228_800_000),
            ("9999-12-31T23:59:59Z", 253_402_300_799_000),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_rfc3339(s), Ok(ms), "{s}");
        }
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for s in [
            "",
            "2026-12-01",
            "2026-12-01T09:00:00",
            "2026-12-01T09:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-12-00T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T09:60:00Z",
            "2026-12-01T09:00:61Z",
            "2026-12-01T09:00:00.Z",
            "2026-12-01T09:00:00+0100",
            "2026-12-01T09:00:00+24:00",
            "2026-12-01T09:00:00Zjunk",
            "26-12-01T09:00:00Z",
            "2026-1-01T09:00:00Z",
            "２０２６-12-01T09:00:00Z",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }
}
