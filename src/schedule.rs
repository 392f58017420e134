//! When a connection runs: the fixed time `daily` and `hourly` stand for, and the next run
//! after a given instant in the configured time zone.
//!
//! Pure functions of the schedule, the connection's name, the zone and the instant; no clock is
//! read here and nothing is scheduled. `daily` and `hourly` are spread by a hash of the
//! connection's name so that a hundred connections do not all start at the same minute.

use crate::config::Schedule;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// How many minutes after midnight a `daily` connection may start: 00:00 to 05:59.
const DAILY_SPREAD_MINUTES: u32 = 6 * 60;

/// A stable number from a connection's name (BLAKE3, so it does not change between builds
/// or platforms the way `std`'s hasher may).
fn name_hash(name: &str) -> u32 {
    let hash = blake3::hash(name.as_bytes());
    let b = hash.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The minute after local midnight at which a `daily` connection runs.
pub fn daily_minute(name: &str) -> u32 {
    name_hash(name) % DAILY_SPREAD_MINUTES
}

/// The minute past each hour at which an `hourly` connection runs.
pub fn hourly_minute(name: &str) -> u32 {
    name_hash(name) % 60
}

/// The schedule as a cron expression (minute hour day month weekday).
pub fn cron_text(schedule: &Schedule, name: &str) -> String {
    match schedule {
        Schedule::Daily => {
            let m = daily_minute(name);
            format!("{} {} * * *", m % 60, m / 60)
        }
        Schedule::Hourly => format!("{} * * * *", hourly_minute(name)),
        Schedule::Cron(_, text) => text.clone(),
    }
}

/// The schedule for people: `daily at 03:17`, `hourly at :17`, or the cron expression.
pub fn describe(schedule: &Schedule, name: &str) -> String {
    match schedule {
        Schedule::Daily => {
            let m = daily_minute(name);
            format!("daily at {:02}:{:02}", m / 60, m % 60)
        }
        Schedule::Hourly => format!("hourly at :{:02}", hourly_minute(name)),
        Schedule::Cron(_, text) => format!("cron \"{text}\""),
    }
}

/// The first scheduled time strictly after `after`, read in `zone`. `None` only for a cron
/// expression that never fires again (such as the 30th of February).
pub fn next_run(schedule: &Schedule, name: &str, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = match schedule {
        Schedule::Cron(cron, _) => (**cron).clone(),
        other => cron_text(other, name).parse::<croner::Cron>().ok()?,
    };
    cron.find_next_occurrence(&after.with_timezone(&zone), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The longest interval between the schedule's next eight runs after `after`: how long a
/// run may be awaited (a weekday schedule's is the weekend's three days). `None` for a cron
/// expression that fires fewer than twice more.
pub fn period(schedule: &Schedule, name: &str, after: DateTime<Utc>) -> Option<chrono::TimeDelta> {
    let mut at = next_run(schedule, name, Tz::UTC, after)?;
    let mut longest = None;
    for _ in 0..7 {
        let next = next_run(schedule, name, Tz::UTC, at)?;
        longest = longest.max(Some(next - at));
        at = next;
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cron(text: &str) -> Schedule {
        Schedule::Cron(Box::new(text.parse().unwrap()), text.to_string())
    }

    #[test]
    fn daily_is_spread_over_the_early_hours_and_stable() {
        let minutes: std::collections::BTreeSet<u32> =
            (0..200).map(|i| daily_minute(&format!("partner-{i}"))).collect();
        assert!(minutes.iter().all(|m| *m < 360));
        assert!(
            minutes.len() > 100,
            "names spread over many minutes: {}",
            minutes.len()
        );
        assert_eq!(daily_minute("acme-products"), daily_minute("acme-products"));
    }

    #[test]
    fn next_runs() {
        let name = "acme-products";
        let m = daily_minute(name);
        let (h, mm) = (m / 60, m % 60);
        let berlin = chrono_tz::Europe::Berlin;
        let at = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        // Daily in Berlin (UTC+1 in winter): the local time, converted.
        let local = berlin.with_ymd_and_hms(2026, 11, 23, h, mm, 0).unwrap();
        assert_eq!(
            next_run(&Schedule::Daily, name, berlin, at(2026, 11, 22, 12, 0)),
            Some(local.with_timezone(&Utc))
        );
        assert_eq!(
            describe(&Schedule::Daily, name),
            format!("daily at {h:02}:{mm:02}")
        );
        // Strictly after: a run at the scheduled instant is followed by the next day's.
        let first = next_run(&cron("30 2 * * *"), name, Tz::UTC, at(2026, 11, 22, 2, 30));
        assert_eq!(first, Some(at(2026, 11, 23, 2, 30)));
        let hourly = next_run(&Schedule::Hourly, name, Tz::UTC, at(2026, 11, 22, 2, 59)).unwrap();
        assert_eq!(hourly, at(2026, 11, 22, 3, hourly_minute(name)));
        assert_eq!(
            next_run(&cron("0 0 30 2 *"), name, Tz::UTC, at(2026, 1, 1, 0, 0)),
            None
        );
    }

    #[test]
    fn the_period_is_the_longest_wait_between_runs() {
        let t = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let h = |n: i64| Some(chrono::TimeDelta::hours(n));
        let cases = [
            (Schedule::Daily, h(24)),
            (Schedule::Hourly, h(1)),
            (cron("*/15 * * * *"), Some(chrono::TimeDelta::minutes(15))),
            // Weekdays at 09:00: Friday to Monday is the longest wait.
            (cron("0 9 * * 1-5"), h(72)),
            (cron("0 0 30 2 *"), None),
        ];
        for (schedule, want) in cases {
            assert_eq!(
                period(&schedule, "acme", t),
                want,
                "{}",
                describe(&schedule, "acme")
            );
        }
    }
}
