//! Image references as Docker normalizes them: `httpd` is
//! `docker.io/library/httpd:latest`.

/// The built-in images the store makes from local binaries.
pub const BUILTINS: [&str; 3] = ["httpd", "busybox", "skiff"];

/// Normalizes a reference to `domain/path:tag`, or `domain/path@sha256:<hex>` when it
/// has a digest (the tag beside a digest says nothing more, as containerd keys it).
pub fn normalize(reference: &str) -> String {
    let (without_digest, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match without_digest.rfind(':') {
        Some(i) if !without_digest[i + 1..].contains('/') => {
            (&without_digest[..i], &without_digest[i + 1..])
        }
        _ => (without_digest, "latest"),
    };
    let first = name.split('/').next().unwrap_or(name);
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => format!("{full}:{tag}"),
    }
}

/// The built-in image a reference means, if any: any tag of `httpd`, `busybox` or
/// `skiff` on Docker Hub's library (or without a domain).
pub fn builtin(reference: &str) -> Option<&'static str> {
    let n = normalize(reference);
    if n.contains('@') {
        return None;
    }
    let repo = n.rsplit_once(':').map(|(r, _)| r).unwrap_or(&n);
    let short = repo.strip_prefix("docker.io/library/")?;
    BUILTINS.iter().copied().find(|b| *b == short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize("httpd"), "docker.io/library/httpd:latest");
        assert_eq!(normalize("httpd:2.4"), "docker.io/library/httpd:2.4");
        assert_eq!(
            normalize("docker.io/library/httpd"),
            "docker.io/library/httpd:latest"
        );
        assert_eq!(normalize("bitnami/nginx:1"), "docker.io/bitnami/nginx:1");
        assert_eq!(normalize("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(
            normalize("quay.io/a/b:v@sha256:abc"),
            "quay.io/a/b@sha256:abc"
        );
        assert_eq!(
            normalize("nginx@sha256:abc"),
            "docker.io/library/nginx@sha256:abc"
        );
    }

    #[test]
    fn builtins_any_tag() {
        assert_eq!(builtin("httpd:2.4"), Some("httpd"));
        assert_eq!(builtin("docker.io/library/busybox:latest"), Some("busybox"));
        assert_eq!(builtin("skiff"), Some("skiff"));
        assert_eq!(builtin("nginx"), None);
        assert_eq!(builtin("quay.io/httpd"), None);
    }
}
