//! The cron schedules kube accepts (robfig/cron v3's standard parser, which kube's
//! CronJob controller and validation use): five fields `minute hour day-of-month month
//! day-of-week` of values, `*`/`?`, ranges `a-b`, steps `/n` and lists `a,b`, names of
//! months (`jan`..`dec`) and days (`sun`..`sat`), and the descriptors `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly`.
//!
//! [`Schedule::next`] is robfig's `SpecSchedule.Next`: the first matching minute after
//! a time, in the schedule's time zone, or none within five years.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use k8s_openapi::jiff;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Whether the day-of-month field was `*` or `?` (robfig's star bit): then the day
    /// must match both day fields, else either (classic cron).
    dom_star: bool,
    /// As `dom_star`, for the day of the week.
    dow_star: bool,
}

/// Bounds and names of one field.
struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Field = Field {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// How far [`Schedule::next`] looks ahead (robfig gives up after five years too).
const YEARS_AHEAD: i16 = 5;

impl Schedule {
    /// Parses `spec`; the error is robfig's message (kube shows it after
    /// `spec.schedule: Invalid value: "<spec>": `).
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".to_string());
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            // kube rejects these in favour of `spec.timeZone`.
            return Err(
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string(),
            );
        }
        if let Some(d) = spec.strip_prefix('@') {
            let expanded = match d {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(format!("unrecognized descriptor: {spec}")),
            };
            return Schedule::parse(expanded);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            // robfig prints the fields as a Go slice.
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        let (minute, _) = parse_field(fields[0], &MINUTE)?;
        let (hour, _) = parse_field(fields[1], &HOUR)?;
        let (dom, dom_star) = parse_field(fields[2], &DOM)?;
        let (month, _) = parse_field(fields[3], &MONTH)?;
        let (dow, dow_star) = parse_field(fields[4], &DOW)?;
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = bit(&self.dom, d.day() as u32);
        let dow = bit(&self.dow, d.weekday().to_sunday_zero_offset() as u32);
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled minute strictly after `after`, in `tz`; none within five
    /// years (a schedule such as `0 0 30 2 *` never fires).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        // The next whole minute after `after`.
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year().saturating_add(YEARS_AHEAD);
        while t.year() <= limit {
            if !bit(&self.month, t.month() as u32) {
                t = first_of_next_month(t)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !bit(&self.hour, t.hour() as u32) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !bit(&self.minute, t.minute() as u32) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A local time skipped by a DST change moves forward; one repeated by it
            // may map to the past: then look on.
            let at = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if at > after {
                return Some(at);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

fn bit(set: &u64, v: u32) -> bool {
    set & (1u64 << v) != 0
}

fn first_of_next_month(t: DateTime) -> Option<DateTime> {
    let first = t.date().first_of_month().checked_add(1.month()).ok()?;
    Some(first.to_datetime(jiff::civil::Time::midnight()))
}

/// Parses one field (a comma-separated list of ranges) into its bits, and whether it
/// was a bare `*`/`?`.
fn parse_field(s: &str, f: &Field) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in s.split(',') {
        let (b, st) = parse_range(part, f)?;
        bits |= b;
        star |= st;
    }
    Ok((bits, star))
}

/// One `*`, `?`, `n`, `a-b`, optionally followed by `/step`.
fn parse_range(s: &str, f: &Field) -> Result<(u64, bool), String> {
    let (range, step) = match s.split_once('/') {
        Some((r, st)) => (r, Some(st)),
        None => (s, None),
    };
    let (mut start, mut end, mut star) = if range == "*" || range == "?" {
        (f.min, f.max, true)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a, f)?, value(b, f)?, false)
    } else {
        let v = value(range, f)?;
        (v, v, false)
    };
    let step = match step {
        None => 1,
        Some(st) => {
            let n: u32 = st
                .parse()
                .map_err(|_| format!("failed to parse int from {st}"))?;
            if !range.contains('-') && !star {
                // `n/step` runs from n to the end of the field.
                end = f.max;
            }
            if n > 1 {
                star = false;
            }
            n
        }
    };
    if start < f.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {s}",
            f.min
        ));
    }
    if end > f.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {s}",
            f.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {s}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {s}"));
    }
    let mut bits = 0u64;
    while start <= end {
        bits |= 1u64 << start;
        start += step;
    }
    Ok((bits, star))
}

/// A number or a name of the field.
fn value(s: &str, f: &Field) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + f.min);
    }
    s.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {s}: invalid syntax"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        Schedule::parse(spec)
            .expect(spec)
            .next(at(after), &TimeZone::UTC)
            .map(|t| t.to_string())
    }

    #[test]
    fn parses_fields_names_steps_lists_and_descriptors() {
        assert!(Schedule::parse("* * * * *").is_ok());
        assert!(Schedule::parse("*/15 0-6,22 1-31/2 JAN-mar,dec mon-fri").is_ok());
        assert!(Schedule::parse("? ? ? ? ?").is_ok());
        assert_eq!(Schedule::parse("@daily"), Schedule::parse("0 0 * * *"));
        assert_eq!(Schedule::parse("@midnight"), Schedule::parse("0 0 * * *"));
        assert_eq!(Schedule::parse("@annually"), Schedule::parse("@yearly"));
        assert_eq!(Schedule::parse("@weekly"), Schedule::parse("0 0 * * sun"));
        assert_eq!(
            Schedule::parse("5/20 * * * *"),
            Schedule::parse("5,25,45 * * * *")
        );
        for bad in [
            "",
            "x",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "5-1 * * * *",
            "*/0 * * * *",
            "* * * foo *",
            "@every 5m",
            "TZ=UTC * * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            Schedule::parse("x").unwrap_err(),
            "expected exactly 5 fields, found 1: [x]"
        );
    }

    #[test]
    fn next_is_the_first_matching_minute_after() {
        let t = "2026-01-01T10:00:30Z";
        assert_eq!(
            next("* * * * *", t).as_deref(),
            Some("2026-01-01T10:01:00Z")
        );
        assert_eq!(
            next("* * * * *", "2026-01-01T10:00:00Z").as_deref(),
            Some("2026-01-01T10:01:00Z")
        );
        assert_eq!(
            next("*/15 * * * *", t).as_deref(),
            Some("2026-01-01T10:15:00Z")
        );
        assert_eq!(next("@hourly", t).as_deref(), Some("2026-01-01T11:00:00Z"));
        assert_eq!(next("@daily", t).as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(next("@monthly", t).as_deref(), Some("2026-02-01T00:00:00Z"));
        assert_eq!(next("@yearly", t).as_deref(), Some("2027-01-01T00:00:00Z"));
        // 2026-01-01 is a Thursday.
        assert_eq!(
            next("0 9 * * mon", t).as_deref(),
            Some("2026-01-05T09:00:00Z")
        );
        // Both day fields restricted: either matches.
        assert_eq!(
            next("0 0 15 * mon", t).as_deref(),
            Some("2026-01-05T00:00:00Z")
        );
        // A starred day of the month: the weekday must match too.
        assert_eq!(
            next("0 0 * * fri", t).as_deref(),
            Some("2026-01-02T00:00:00Z")
        );
        assert_eq!(
            next("0 0 29 2 *", t).as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        assert_eq!(next("0 0 30 2 *", t), None);
    }

    #[test]
    fn next_follows_the_time_zone() {
        let Ok(tz) = TimeZone::get("Europe/Berlin") else {
            // No tz database on this machine: only UTC is checked elsewhere.
            return;
        };
        let s = Schedule::parse("0 9 * * *").expect("schedule");
        let n = s.next(at("2026-01-01T10:00:00Z"), &tz).expect("next");
        assert_eq!(n.to_string(), "2026-01-02T08:00:00Z");
    }
}
