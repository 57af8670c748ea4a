//! Golden files: text a test produces, compared with a file checked in next to the test.
//!
//! Run the tests with `UPDATE_GOLDEN=1` to (re)write the files, then review the diff in
//! git. One variable for the whole workspace, so one command refreshes every golden file.

use std::path::Path;

/// The environment variable that makes [`check`] write instead of compare.
pub const UPDATE_ENV: &str = "UPDATE_GOLDEN";

/// Compares `actual` with the file at `path`; with `UPDATE_GOLDEN` set, writes `actual`
/// there instead (creating parent directories).
///
/// On a mismatch, panics with the first differing lines, so the failure is readable
/// without opening the file.
#[track_caller]
pub fn check(path: impl AsRef<Path>, actual: &str) {
    let path = path.as_ref();
    if std::env::var_os(UPDATE_ENV).is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with {UPDATE_ENV}=1)", path.display()));
    if expected != actual {
        panic!(
            "{} differs from the golden file ({UPDATE_ENV}=1 to rewrite):\n{}",
            path.display(),
            diff_summary(&expected, actual)
        );
    }
}

/// Like [`check`] for a JSON value, written pretty-printed with a final newline.
#[track_caller]
pub fn check_json(path: impl AsRef<Path>, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("a JSON value serializes") + "\n";
    check(path, &text);
}

/// The first few differing lines of two texts, `-` expected and `+` actual, and both
/// line counts.
fn diff_summary(expected: &str, actual: &str) -> String {
    let exp: Vec<&str> = expected.lines().collect();
    let act: Vec<&str> = actual.lines().collect();
    let mut out = Vec::new();
    for i in 0..exp.len().max(act.len()) {
        let (a, b) = (exp.get(i), act.get(i));
        if a != b {
            out.push(format!(
                "line {}:\n- {}\n+ {}",
                i + 1,
                a.unwrap_or(&"<none>"),
                b.unwrap_or(&"<none>")
            ));
            if out.len() == 5 {
                break;
            }
        }
    }
    out.push(format!("(expected {} lines, got {})", exp.len(), act.len()));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_first_difference_and_counts() {
        let s = diff_summary("a\nb\nc\n", "a\nB\n");
        assert!(s.contains("line 2:\n- b\n+ B"), "{s}");
        assert!(s.contains("line 3:\n- c\n+ <none>"), "{s}");
        assert!(s.contains("(expected 3 lines, got 2)"), "{s}");
    }

    #[test]
    fn check_passes_on_equal_text() {
        let dir = std::env::temp_dir().join(format!("skiff-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("same.txt");
        std::fs::write(&path, "x\n").unwrap();
        check(&path, "x\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
