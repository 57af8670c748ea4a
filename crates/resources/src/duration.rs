//! Kubernetes' `HumanDuration` (`k8s.io/apimachinery/pkg/util/duration`): the AGE column.

use chrono::Duration;

/// Formats a duration as kubectl shows ages: `5s`, `3m2s`, `10m`, `5h3m`, `2d3h`, `50d`,
/// `2y30d`. Negative durations (clock skew) print as `0s`, as Kubernetes does for
/// slightly negative values; two seconds or more in the future prints `<invalid>`.
pub fn human_duration(d: Duration) -> String {
    // Up to a second in the future counts as "now" (clock skew between machines).
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kubernetes_examples() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 180, "5h3m"),
            (47 * 3600, "47h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (50 * 86400, "50d"),
            (2 * 365 * 86400 + 30 * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(Duration::seconds(s)), want, "{s}s");
        }
        assert_eq!(human_duration(Duration::milliseconds(-500)), "0s");
        assert_eq!(human_duration(Duration::seconds(-1)), "0s");
        assert_eq!(human_duration(Duration::seconds(-2)), "<invalid>");
    }
}
