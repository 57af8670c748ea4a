//! Kubernetes resource quantities (`100m`, `0.5`, `64Mi`, `1G`, `129e6`) as numbers.

/// Parses a quantity to its value (CPU in cores, memory in bytes).
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

/// cpu.shares for a CPU request (the kubelet's milliCPUToShares: at least 2).
pub fn cpu_shares(request: &str) -> Option<u64> {
    let milli = (parse(request)? * 1000.0).ceil() as u64;
    Some((milli * 1024 / 1000).max(2))
}

/// CFS quota per 100 ms period for a CPU limit (at least 1 ms).
pub fn cpu_quota(limit: &str) -> Option<i64> {
    let milli = (parse(limit)? * 1000.0).ceil() as i64;
    Some((milli * 100).max(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("64Mi"), Some(67108864.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("129e6"), Some(129e6));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("x"), None);
        assert_eq!(cpu_shares("100m"), Some(102));
        assert_eq!(cpu_shares("1m"), Some(2));
        assert_eq!(cpu_quota("500m"), Some(50_000));
    }
}
