//! CPU quantities as the kernel's cgroup settings (parsing is `skiff_api::quantity`).

pub use skiff_api::quantity::parse;

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
