//! What `skiff image ls` and `skiff image rm` print, in crictl's shape: `crictl images`'
//! table (`IMAGE  TAG  IMAGE ID  SIZE`, sorted by first tag, IDs cut to 13 digits,
//! decimal sizes with 3 significant digits), `-q`'s IDs, and `crictl rmi`'s
//! `Deleted: ...` lines and error messages. Removal refuses an image a container on
//! the node uses (running or exited and not removed), with the words CRI-O's storage
//! gives crictl: `image used by <container>: image is in use by a container`.

use std::path::Path;

use anyhow::Result;

use super::images::{self, ImageInfo, ImageStore};

/// crictl's truncated ID length.
const TRUNCATED_ID: usize = 13;

/// A size as crictl prints it (go-units' `HumanSizeWithPrecision(size, 3)`): decimal
/// units, 3 significant digits, no trailing zeros (`4.27MB`, `105MB`, `512B`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // Go's %.3g: 3 significant digits, trailing zeros dropped.
    let decimals = if size >= 100.0 {
        0
    } else if size >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{size:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
}

/// A tag that only stands for an image with no name (an image loaded without one is
/// recorded under `sha256:<id>`).
fn is_id_ref(tag: &str) -> bool {
    tag.strip_prefix("docker.io/library/sha256:")
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The rows of `crictl images` for these images: (image, tag, truncated ID, size),
/// sorted as crictl sorts them (by first tag, then first digest, then ID).
pub fn image_rows(list: &[ImageInfo]) -> Vec<[String; 4]> {
    let mut list: Vec<ImageInfo> = list
        .iter()
        .cloned()
        .map(|mut i| {
            i.repo_tags.retain(|t| !is_id_ref(t));
            i
        })
        .collect();
    // crictl's order made total: tagged images by first tag, then those with only a
    // digest by it, then the rest by ID.
    list.sort_by_key(|i| {
        (
            i.repo_tags.is_empty(),
            i.repo_tags.first().cloned(),
            i.repo_digests.is_empty(),
            i.repo_digests.first().cloned(),
            i.id.clone(),
        )
    });
    let mut rows = Vec::new();
    for i in &list {
        let name = i
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| "<none>".into());
        let id: String =
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(TRUNCATED_ID)
                .collect();
        let size = human_size(i.size);
        if i.repo_tags.is_empty() {
            rows.push([name, "<none>".into(), id, size]);
            continue;
        }
        for t in &i.repo_tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "<none>"));
            rows.push([repo.to_string(), tag.to_string(), id.clone(), size.clone()]);
        }
    }
    rows
}

/// `crictl images`' table: a header and the rows, columns aligned as its tabwriter
/// aligns them (cells padded by 3, at least 10 wide; the last column not padded).
pub fn images_table(list: &[ImageInfo]) -> String {
    let mut rows = vec![["IMAGE", "TAG", "IMAGE ID", "SIZE"].map(String::from)];
    rows.extend(image_rows(list));
    let widths: Vec<usize> = (0..3)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    let mut out = String::new();
    for r in &rows {
        for (c, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}", r[c]));
        }
        out.push_str(&r[3]);
        out.push('\n');
    }
    out
}

/// What [`remove`] did with one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Removed: the lines crictl prints (`Deleted: <tag>` for each tag, or each repo
    /// digest of an untagged image), and the bytes it freed.
    Deleted(Vec<String>, u64),
    /// Not removed: crictl's error line.
    Failed(String),
}

/// Removes the images `names` name (references, IDs or ID prefixes) from the store
/// under `data_dir`, as `crictl rmi` does, refusing an image a container uses and the
/// built-in images.
pub fn remove(data_dir: &Path, names: &[String]) -> Result<Vec<Removed>> {
    let store = ImageStore::new(data_dir, Path::new("/bin/busybox"));
    let _held = store.exclusive()?;
    let listed = images::list(data_dir)?;
    let used = images::in_use(data_dir);
    let mut out = Vec::new();
    for name in names {
        let Some(id) = store.find(name)? else {
            out.push(Removed::Failed(format!("no such image {name}")));
            continue;
        };
        let info = listed.iter().find(|i| i.id == id);
        if info.is_some_and(|i| i.builtin) {
            out.push(Removed::Failed(format!(
                "error of removing image {name:?}: {id} is a built-in image"
            )));
            continue;
        }
        if let Some(container) = used.get(&id) {
            out.push(Removed::Failed(format!(
                "error of removing image {name:?}: image used by {container}: image is in use by a container"
            )));
            continue;
        }
        let lines: Vec<String> = match info {
            Some(i) if i.repo_tags.iter().any(|t| !is_id_ref(t)) => i
                .repo_tags
                .iter()
                .filter(|t| !is_id_ref(t))
                .map(|t| format!("Deleted: {t}"))
                .collect(),
            Some(i) => i
                .repo_digests
                .iter()
                .map(|d| format!("Deleted: {d}"))
                .collect(),
            None => Vec::new(),
        };
        match store.remove(&id) {
            Ok(bytes) => out.push(Removed::Deleted(lines, bytes)),
            Err(e) => out.push(Removed::Failed(format!(
                "error of removing image {name:?}: {e:#}"
            ))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, tags: &[&str], digests: &[&str], size: u64) -> ImageInfo {
        ImageInfo {
            id: format!("sha256:{id}"),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            size,
            builtin: false,
            repo_digests: digests.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn sizes_as_go_units_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(4_270_000), "4.27MB");
        assert_eq!(human_size(104_857_600), "105MB");
        assert_eq!(human_size(10_000_000), "10MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn the_table_has_crictls_shape() {
        let hex = "a".repeat(64);
        let list = vec![
            info(
                &"b".repeat(64),
                &[
                    "docker.io/library/nginx:1.27",
                    "docker.io/library/nginx:latest",
                ],
                &[],
                187_000_000,
            ),
            info(
                &"c".repeat(64),
                &[],
                &["registry.local:5000/app@sha256:0123"],
                4_270_000,
            ),
            info(
                &hex,
                &[&format!("docker.io/library/sha256:{hex}")],
                &[],
                512,
            ),
            info(
                &"d".repeat(64),
                &["docker.io/library/busybox:latest"],
                &[],
                2_180_000,
            ),
        ];
        let expected = "\
IMAGE                       TAG       IMAGE ID        SIZE
docker.io/library/busybox   latest    ddddddddddddd   2.18MB
docker.io/library/nginx     1.27      bbbbbbbbbbbbb   187MB
docker.io/library/nginx     latest    bbbbbbbbbbbbb   187MB
registry.local:5000/app     <none>    ccccccccccccc   4.27MB
<none>                      <none>    aaaaaaaaaaaaa   512B
";
        assert_eq!(images_table(&list), expected);
    }
}
