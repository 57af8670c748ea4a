//! Kubernetes resource quantities (`100m`, `0.5`, `64Mi`, `1G`, `129e6`) as numbers, for
//! the components that compare or enforce them (scheduler, agent).

/// Parses a quantity to its value (CPU in cores, memory in bytes); `None` if malformed.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_every_suffix_kind() {
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("64Mi"), Some(67108864.0));
        assert_eq!(parse("1.5Gi"), Some(1.5 * 1073741824.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("129e6"), Some(129e6));
        assert_eq!(parse(""), None);
        assert_eq!(parse("x"), None);
    }
}
