//! Named time zones for CronJobs' `spec.timeZone`, from the IANA database compiled
//! into the binary (jiff's bundled tzdb), as kube-apiserver and kube-controller-manager
//! carry Go's embedded `time/tzdata`: a zone resolves the same on every host, whatever
//! its `/usr/share/zoneinfo` holds.

use jiff::tz::TimeZone;

/// The zone `name` as Go's `time.LoadLocation` finds it (kube's CronJob controller and
/// validation call it); the error is Go's message.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        _ => TimeZone::get(name).map_err(|_| format!("unknown time zone {name}")),
    }
}

/// The problems kube's `validateTimeZone` finds in a CronJob's `spec.timeZone`, in its
/// words (the field path and value are the caller's).
pub fn validate(name: &str) -> Vec<String> {
    if name.is_empty() {
        return vec!["timeZone must be nil or non-empty string".to_string()];
    }
    let mut out = Vec::new();
    // Go's tz names: letters, digits and `+-_` parts; no `.`/`..` or leading `-`.
    let bad_part = |p: &str| {
        p.is_empty()
            || p == "."
            || p == ".."
            || p.starts_with('-')
            || p.len() > 14
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.'))
    };
    if name.split('/').any(bad_part) {
        out.push(format!("unknown time zone {name}"));
    }
    if name.eq_ignore_ascii_case("local") {
        out.push(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_string(),
        );
    }
    if let Err(e) = zone(name) {
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_zones_resolve_from_the_bundled_database() {
        let berlin = zone("Europe/Berlin").expect("Europe/Berlin");
        // 2026-07-01T12:00Z is 14:00 in Berlin (CEST), 2026-01-01T12:00Z 13:00 (CET).
        let summer: jiff::Timestamp = "2026-07-01T12:00:00Z".parse().expect("ts");
        let winter: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().expect("ts");
        assert_eq!(summer.to_zoned(berlin.clone()).hour(), 14);
        assert_eq!(winter.to_zoned(berlin).hour(), 13);
        assert!(zone("America/New_York").is_ok());
        assert!(zone("UTC").is_ok() && zone("Etc/UTC").is_ok());
        assert_eq!(
            zone("Mars/Olympus").err().as_deref(),
            Some("unknown time zone Mars/Olympus")
        );
    }

    #[test]
    fn validation_words_are_kubes() {
        assert!(validate("Europe/Berlin").is_empty());
        assert_eq!(validate(""), ["timeZone must be nil or non-empty string"]);
        assert_eq!(
            validate("Local"),
            [
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
                "unknown time zone Local"
            ]
        );
        assert_eq!(
            validate("../etc/passwd")[0],
            "unknown time zone ../etc/passwd"
        );
    }
}
