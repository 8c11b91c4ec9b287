//! Five-field cron expressions, in UTC: `minute hour day-of-month month day-of-week`.
//!
//! Each field is `*`, a number, a range `a-b`, any of these followed by a step (`*/15`,
//! `0-30/10`, `5/20` meaning `5-max/20`), or a comma-separated list of them (`1,15,30-35`).
//! Months may also be written `jan`..`dec` and days of the week `sun`..`sat` (any case);
//! Sunday is `0` or `7`.
//!
//! As in Vixie cron, when both the day of the month and the day of the week are restricted
//! (neither starts with `*`), a day matches if **either** matches: `0 0 1 * mon` fires at
//! midnight on the first of every month and on every Monday.
//!
//! Slots are whole minutes, as milliseconds since 1970 (UTC); no time zone, no daylight saving.

use std::fmt;

/// One field of a cron expression, for errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CronField {
    /// The first field, 0–59.
    Minute,
    /// The second field, 0–23.
    Hour,
    /// The third field, 1–31.
    DayOfMonth,
    /// The fourth field, 1–12 or `jan`–`dec`.
    Month,
    /// The fifth field, 0–7 (0 and 7 are Sunday) or `sun`–`sat`.
    DayOfWeek,
}

impl CronField {
    const ALL: [CronField; 5] = [
        CronField::Minute,
        CronField::Hour,
        CronField::DayOfMonth,
        CronField::Month,
        CronField::DayOfWeek,
    ];

    /// The smallest and largest value the field takes.
    fn bounds(self) -> (u32, u32) {
        match self {
            CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 7),
        }
    }

    /// The names the field accepts, in order from its first value.
    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => &[
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ],
            CronField::DayOfWeek => &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
            _ => &[],
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (low, high) = self.bounds();
        let name = match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        };
        write!(f, "{name} field ({low}-{high})")
    }
}

/// Why a cron expression was refused: the field (when one is at fault) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronError {
    /// The field at fault, if the problem is in one field.
    pub field: Option<CronField>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "the {field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CronError {}

/// A parsed cron expression; see the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    /// Bit `v` set when value `v` matches.
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    /// Sunday is bit 0 (a `7` is folded into it).
    weekdays: u64,
    /// Whether the day-of-month and day-of-week fields are restricted (do not start with `*`).
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// How far a search for the next or previous slot looks: more than the longest gap between two
/// 29ths of February (8 years, across a century that is not a leap year).
const SEARCH_DAYS: i64 = 9 * 366;

impl Cron {
    /// Parses `expression`; the error names the field at fault and what is wrong with it. An
    /// expression that can never fire (`0 0 30 2 *`) is refused too.
    pub fn parse(expression: &str) -> Result<Cron, CronError> {
        let parts: Vec<&str> = expression.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError {
                field: None,
                message: format!(
                    "`{expression}` has {} fields; a cron expression has 5: minute hour day-of-month month day-of-week",
                    parts.len()
                ),
            });
        }
        let mut sets = [0u64; 5];
        for ((set, part), field) in sets.iter_mut().zip(&parts).zip(CronField::ALL) {
            *set = parse_field(part, field).map_err(|message| CronError {
                field: Some(field),
                message,
            })?;
        }
        let [minutes, hours, days, months, mut weekdays] = sets;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let cron = Cron {
            text: parts.join(" "),
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted: !parts[2].starts_with('*'),
            weekdays_restricted: !parts[4].starts_with('*'),
        };
        if cron.next_after(0).is_none() {
            return Err(CronError {
                field: Some(CronField::DayOfMonth),
                message: format!(
                    "`{}` never falls in the months `{}`: the expression never fires",
                    parts[2], parts[3]
                ),
            });
        }
        Ok(cron)
    }

    /// The expression, normalised to single spaces.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first slot strictly after `millis` (milliseconds since 1970, UTC), if any within the
    /// next nine years.
    pub fn next_after(&self, millis: i64) -> Option<i64> {
        // The first whole minute after `millis`.
        let start = (millis.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
        let first_day = start.div_euclid(DAY_MS);
        let first_minute = (start.rem_euclid(DAY_MS) / MINUTE_MS) as u32;
        for day in first_day..first_day + SEARCH_DAYS {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day { first_minute } else { 0 };
            if let Some(minute) = (from..1440).find(|m| self.minute_of_day_matches(*m)) {
                return Some(day * DAY_MS + i64::from(minute) * MINUTE_MS);
            }
        }
        None
    }

    /// The last slot at or before `millis`, if any within the last nine years.
    pub fn at_or_before(&self, millis: i64) -> Option<i64> {
        let end = millis.div_euclid(MINUTE_MS) * MINUTE_MS;
        let last_day = end.div_euclid(DAY_MS);
        let last_minute = (end.rem_euclid(DAY_MS) / MINUTE_MS) as u32;
        for day in (last_day - SEARCH_DAYS..=last_day).rev() {
            if !self.day_matches(day) {
                continue;
            }
            let to = if day == last_day { last_minute } else { 1439 };
            if let Some(minute) = (0..=to).rev().find(|m| self.minute_of_day_matches(*m)) {
                return Some(day * DAY_MS + i64::from(minute) * MINUTE_MS);
            }
        }
        None
    }

    fn minute_of_day_matches(&self, minute: u32) -> bool {
        bit(self.hours, minute / 60) && bit(self.minutes, minute % 60)
    }

    /// Whether day `day` (days since 1970-01-01) matches the date fields.
    fn day_matches(&self, day: i64) -> bool {
        let (_, month, day_of_month) = civil_from_days(day);
        if !bit(self.months, month) {
            return false;
        }
        // 1970-01-01 was a Thursday (4).
        let weekday = (day + 4).rem_euclid(7) as u32;
        let by_date = bit(self.days, day_of_month);
        let by_weekday = bit(self.weekdays, weekday);
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_date || by_weekday,
            _ => by_date && by_weekday,
        }
    }
}

fn bit(set: u64, value: u32) -> bool {
    set & (1 << value) != 0
}

/// The values one field matches, as a bit set; the error says what is wrong.
fn parse_field(text: &str, field: CronField) -> Result<u64, String> {
    let (low, high) = field.bounds();
    let mut set = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("`{text}` has an empty list item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("`{item}`: the step `{step}` is not a whole number"))?;
                if step == 0 {
                    return Err(format!("`{item}`: the step must be at least 1"));
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, field)?, value(b, field)?);
            if a > b {
                return Err(format!("`{item}`: the range {a}-{b} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range, field)?;
            // `a/n` means from `a` to the end, every `n`.
            (a, if item.contains('/') { high } else { a })
        };
        let mut v = from;
        while v <= to {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

/// One value of a field: a number within its bounds, or one of its names.
fn value(text: &str, field: CronField) -> Result<u32, String> {
    let (low, high) = field.bounds();
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names().iter().position(|n| *n == lower) {
        // Months are named from 1, days of the week from 0: the field's first value.
        return Ok(low + i as u32);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if v < low || v > high {
        return Err(format!("{v} is out of range"));
    }
    Ok(v)
}

/// The `(year, month, day)` of day `days` since 1970-01-01 (proleptic Gregorian calendar).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds since 1970 of a UTC date and time.
    fn at(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> i64 {
        // Howard Hinnant's `days_from_civil`.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * DAY_MS + i64::from(hour) * 3_600_000 + i64::from(minute) * MINUTE_MS
    }

    fn values(set: u64) -> Vec<u32> {
        (0..64).filter(|v| bit(set, *v)).collect()
    }

    #[test]
    fn the_calendar_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            civil_from_days(at(2024, 2, 29, 0, 0) / DAY_MS),
            (2024, 2, 29)
        );
        assert_eq!(civil_from_days(at(2100, 3, 1, 0, 0) / DAY_MS), (2100, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2026-12-02 is a Wednesday (3).
        assert_eq!((at(2026, 12, 2, 0, 0) / DAY_MS + 4).rem_euclid(7), 3);
    }

    #[test]
    fn every_field_form_parses() {
        let c = |f: &str, field| parse_field(f, field).map(values);
        assert_eq!(
            c("*", CronField::Hour).unwrap(),
            (0..24).collect::<Vec<_>>()
        );
        assert_eq!(c("*/15", CronField::Minute).unwrap(), vec![0, 15, 30, 45]);
        assert_eq!(c("10-13", CronField::Minute).unwrap(), vec![10, 11, 12, 13]);
        assert_eq!(
            c("0-30/10", CronField::Minute).unwrap(),
            vec![0, 10, 20, 30]
        );
        assert_eq!(c("50/5", CronField::Minute).unwrap(), vec![50, 55]);
        assert_eq!(
            c("1,15,30-31", CronField::DayOfMonth).unwrap(),
            vec![1, 15, 30, 31]
        );
        assert_eq!(c("7", CronField::Minute).unwrap(), vec![7]);
        assert_eq!(c("jan,MAR-apr", CronField::Month).unwrap(), vec![1, 3, 4]);
        assert_eq!(
            c("mon-fri", CronField::DayOfWeek).unwrap(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(c("*/2", CronField::Hour).unwrap().len(), 12);
        // Sunday as 7 is Sunday as 0.
        assert_eq!(values(Cron::parse("0 0 * * 7").unwrap().weekdays), vec![0]);
        assert_eq!(
            Cron::parse("  0   */2 * *  * ").unwrap().as_str(),
            "0 */2 * * *"
        );
    }

    #[test]
    fn bad_expressions_name_the_field_at_fault() {
        let error = |e: &str| Cron::parse(e).unwrap_err();
        let cases = [
            ("60 * * * *", Some(CronField::Minute), "60 is out of range"),
            ("* 24 * * *", Some(CronField::Hour), "24 is out of range"),
            (
                "* * 0 * *",
                Some(CronField::DayOfMonth),
                "0 is out of range",
            ),
            ("* * * 13 *", Some(CronField::Month), "13 is out of range"),
            ("* * * * 8", Some(CronField::DayOfWeek), "8 is out of range"),
            (
                "*/0 * * * *",
                Some(CronField::Minute),
                "the step must be at least 1",
            ),
            (
                "*/x * * * *",
                Some(CronField::Minute),
                "is not a whole number",
            ),
            ("5-2 * * * *", Some(CronField::Minute), "runs backwards"),
            ("1,,2 * * * *", Some(CronField::Minute), "empty list item"),
            (
                "* * * foo *",
                Some(CronField::Month),
                "`foo` is not a number",
            ),
            ("* * * * * *", None, "has 6 fields"),
            ("* * * *", None, "has 4 fields"),
            ("", None, "has 0 fields"),
            ("0 0 30 2 *", Some(CronField::DayOfMonth), "never fires"),
        ];
        for (expression, field, words) in cases {
            let e = error(expression);
            assert_eq!(e.field, field, "{expression}: {e}");
            assert!(e.to_string().contains(words), "{expression}: {e}");
        }
        assert_eq!(
            error("* 24 * * *").to_string(),
            "the hour field (0-23): 24 is out of range"
        );
    }

    #[test]
    fn next_slots_follow_the_fields() {
        let next = |e: &str, t: i64| Cron::parse(e).unwrap().next_after(t).unwrap();
        let t = at(2026, 12, 2, 11, 24) + 30_000; // 11:24:30
        assert_eq!(next("* * * * *", t), at(2026, 12, 2, 11, 25));
        // Strictly after: a slot exactly at `t` is not the next one.
        assert_eq!(
            next("* * * * *", at(2026, 12, 2, 11, 25)),
            at(2026, 12, 2, 11, 26)
        );
        assert_eq!(next("*/5 * * * *", t), at(2026, 12, 2, 11, 25));
        assert_eq!(next("0 */2 * * *", t), at(2026, 12, 2, 12, 0));
        assert_eq!(next("30 9 * * *", t), at(2026, 12, 3, 9, 30));
        assert_eq!(next("0 0 1 * *", t), at(2027, 1, 1, 0, 0));
        assert_eq!(next("0 0 29 2 *", t), at(2028, 2, 29, 0, 0));
        // 2026-12-02 is a Wednesday: the next Monday is the 7th.
        assert_eq!(next("0 8 * * mon", t), at(2026, 12, 7, 8, 0));
        // Both day fields restricted: either matches (the 5th comes before Monday the 7th).
        assert_eq!(next("0 0 5 * 1", t), at(2026, 12, 5, 0, 0));
        // Only the weekday restricted: both must match (`*` day of month).
        assert_eq!(next("0 0 * 12 sun", t), at(2026, 12, 6, 0, 0));
        // Across a year end.
        assert_eq!(
            next("59 23 31 12 *", at(2026, 12, 31, 23, 59)),
            at(2027, 12, 31, 23, 59)
        );
        // Before 1970 too.
        assert_eq!(next("0 0 * * *", -1), 0);
    }

    #[test]
    fn previous_slots_mirror_next_ones() {
        let cron = |e: &str| Cron::parse(e).unwrap();
        let t = at(2026, 12, 2, 11, 24) + 30_000;
        assert_eq!(
            cron("* * * * *").at_or_before(t),
            Some(at(2026, 12, 2, 11, 24))
        );
        assert_eq!(
            cron("* * * * *").at_or_before(at(2026, 12, 2, 11, 24)),
            Some(at(2026, 12, 2, 11, 24))
        );
        assert_eq!(
            cron("0 */2 * * *").at_or_before(t),
            Some(at(2026, 12, 2, 10, 0))
        );
        assert_eq!(
            cron("0 0 29 2 *").at_or_before(t),
            Some(at(2024, 2, 29, 0, 0))
        );
        // next(prev(t)) is the first slot after t's previous slot, for many expressions.
        for e in [
            "*/7 * * * *",
            "15 3 * * 1-5",
            "0 0 1,15 * *",
            "0 12 * jun-aug sat",
        ] {
            let c = cron(e);
            let mut s = c.next_after(t).unwrap();
            for _ in 0..50 {
                let n = c.next_after(s).unwrap();
                assert!(n > s);
                assert_eq!(c.at_or_before(n - 1), Some(s), "{e}");
                s = n;
            }
        }
    }
}
