//! The `Date` header value (IMF-fixdate), formatted at most once per second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// `Date: ` + the date + CRLF: the whole field line of a response head.
const LINE_LEN: usize = 6 + DATE_LEN + 2;

struct DateCache {
    /// Loop time (ms) at which `line` was last formatted; `u64::MAX` before the first use.
    formatted_at: u64,
    /// `Date: <IMF-fixdate>\r\n`.
    line: [u8; LINE_LEN],
}

thread_local! {
    static DATE: RefCell<DateCache> = const { RefCell::new(DateCache {
        formatted_at: u64::MAX,
        line: [b' '; LINE_LEN],
    }) };
}

/// Calls `f` with the whole `Date: <IMF-fixdate>\r\n` field line and the loop time it was
/// formatted at. `loop_now_ms` is the loop's cached clock: the line is only re-formatted (from
/// the system clock) when that has moved on by a second, so a busy server formats it once per
/// second rather than per response. A caller keeping a copy of the line may use it while
/// [`date_line_is_current`] says so for the time it was formatted at.
pub(crate) fn with_date_line<R>(loop_now_ms: u64, f: impl FnOnce(&[u8; LINE_LEN], u64) -> R) -> R {
    DATE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if !date_line_is_current(cache.formatted_at, loop_now_ms) {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut line = [0u8; LINE_LEN];
            line[..6].copy_from_slice(b"Date: ");
            line[6..6 + DATE_LEN].copy_from_slice(&format_imf_fixdate(secs));
            line[6 + DATE_LEN..].copy_from_slice(b"\r\n");
            cache.line = line;
            cache.formatted_at = loop_now_ms;
        }
        f(&cache.line, cache.formatted_at)
    })
}

/// Whether a line formatted at loop time `formatted_at` is still the one [`with_date_line`]
/// would give at `loop_now_ms`.
#[inline]
pub(crate) fn date_line_is_current(formatted_at: u64, loop_now_ms: u64) -> bool {
    formatted_at != u64::MAX && loop_now_ms.wrapping_sub(formatted_at) < 1000
}

/// Formats seconds since the Unix epoch as an IMF-fixdate (RFC 9110 5.6.7).
pub fn format_imf_fixdate(unix_secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (hour, min, sec) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let weekday = DAYS[(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's days-to-civil algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);

    let mut out = [b' '; DATE_LEN];
    out[0..3].copy_from_slice(weekday);
    out[3] = b',';
    two_digits(&mut out[5..7], day as u64);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = year.clamp(0, 9999) as u64;
    two_digits(&mut out[12..14], y / 100);
    two_digits(&mut out[14..16], y % 100);
    two_digits(&mut out[17..19], hour);
    out[19] = b':';
    two_digits(&mut out[20..22], min);
    out[22] = b':';
    two_digits(&mut out[23..25], sec);
    out[26..29].copy_from_slice(b"GMT");
    out
}

fn two_digits(out: &mut [u8], v: u64) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(
            &format_imf_fixdate(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(&format_imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_imf_fixdate(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_imf_fixdate(4_102_444_799),
            b"Thu, 31 Dec 2099 23:59:59 GMT"
        );
    }

    #[test]
    fn cached_within_a_second() {
        let (a, at) = with_date_line(10_000, |d, at| (*d, at));
        let (b, still) = with_date_line(10_500, |d, at| (*d, at));
        assert_eq!((a, at), (b, still));
        assert!(date_line_is_current(at, 10_999) && !date_line_is_current(at, 11_000));
        assert!(
            a.starts_with(b"Date: ") && a.ends_with(b" GMT\r\n"),
            "{a:?}"
        );
    }
}
