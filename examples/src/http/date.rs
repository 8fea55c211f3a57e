//! The `Date` header value: RFC 9110 IMF-fixdate, e.g.
//! `Sun, 06 Nov 1994 08:49:37 GMT`, formatted with plain arithmetic.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate.
pub const LEN: usize = 29;

/// Formats `t` (clamped to the Unix epoch) as an IMF-fixdate.
///
/// # Examples
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use pollring_examples::http::date::imf_fixdate;
/// let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
/// assert_eq!(&imf_fixdate(t), b"Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
pub fn imf_fixdate(t: SystemTime) -> [u8; LEN] {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let month_name =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            [(month - 1) as usize];

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(weekday.as_bytes());
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(month_name.as_bytes());
    let year = year.min(9999);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], hour);
    two_digits(&mut out[20..22], minute);
    two_digits(&mut out[23..25], second);
    out
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Year, month (1–12) and day (1–31) of `days` since 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// A formatted `Date` value, reformatted only when the second changes.
#[derive(Debug, Clone, Copy)]
pub struct DateCache {
    second: u64,
    value: [u8; LEN],
}

impl DateCache {
    /// The date of `now`.
    pub fn new(now: SystemTime) -> DateCache {
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        DateCache { second, value: imf_fixdate(now) }
    }

    /// Moves to `now`, formatting only if the second changed; returns
    /// whether it did.
    pub fn update(&mut self, now: SystemTime) -> bool {
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second == self.second {
            return false;
        }
        *self = DateCache { second, value: imf_fixdate(now) };
        true
    }

    /// The formatted value.
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> String {
        String::from_utf8(imf_fixdate(UNIX_EPOCH + Duration::from_secs(secs)).to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT"); // leap day, century rule
        assert_eq!(at(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(at(1_735_689_599), "Tue, 31 Dec 2024 23:59:59 GMT");
        assert_eq!(at(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT"); // 2100 is not a leap year
    }

    #[test]
    fn before_the_epoch_is_clamped() {
        assert_eq!(
            imf_fixdate(UNIX_EPOCH - Duration::from_secs(10)),
            *b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn days_round_trip_over_centuries() {
        // Consecutive days advance the calendar by exactly one day.
        let mut prev = civil_from_days(0);
        for d in 1..200_000 {
            let (y, m, day) = civil_from_days(d);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                [next_day, next_month, next_year].contains(&(y, m, day)),
                "day {d}: {prev:?} -> {:?}",
                (y, m, day)
            );
            prev = (y, m, day);
        }
    }

    #[test]
    fn cache_reformats_on_a_new_second() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut cache = DateCache::new(t);
        cache.update(t + Duration::from_millis(999));
        assert_eq!(cache.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.update(t + Duration::from_secs(1));
        assert_eq!(cache.as_bytes(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }
}
