//! Completion indexes of Indexed Jobs as `status.completedIndexes` writes them: ordered,
//! comma-separated, consecutive runs as intervals ("1,3-5").

use std::collections::BTreeSet;

/// The indexes of `s` below `completions`; what does not parse is skipped, as kube's
/// `parseIndexesFromString` skips it (the field is the controller's own).
pub fn parse(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            continue;
        };
        let last = last.min(completions - 1);
        if first < 0 || first > last {
            continue;
        }
        out.extend(first..=last);
    }
    out
}

/// `set` as "1,3-5" (runs of two are written "3,4", as kube writes them).
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        match last - first {
            0 => parts.push(first.to_string()),
            1 => parts.push(format!("{first},{last}")),
            _ => parts.push(format!("{first}-{last}")),
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[i32]) -> BTreeSet<i32> {
        v.iter().copied().collect()
    }

    #[test]
    fn formats_runs_as_intervals() {
        assert_eq!(format(&set(&[])), "");
        assert_eq!(format(&set(&[1, 3, 4, 5])), "1,3-5");
        assert_eq!(format(&set(&[0, 1, 2, 7, 8])), "0-2,7,8");
        assert_eq!(format(&set(&[4])), "4");
    }

    #[test]
    fn parses_what_it_formats_and_bounds_by_completions() {
        assert_eq!(parse("1,3-5", 10), set(&[1, 3, 4, 5]));
        assert_eq!(parse("", 10), set(&[]));
        assert_eq!(parse("0-2,7,8", 8), set(&[0, 1, 2, 7]));
        assert_eq!(parse("x,2,5-3,-1", 10), set(&[2]));
        let s = set(&[0, 2, 3, 4, 9]);
        assert_eq!(parse(&format(&s), 10), s);
    }
}
