//! The node's content-addressed layer store, `<data>/images/layers/sha256/<diff id>/`:
//! each image layer unpacked once, by the digest of its uncompressed tar (the config's
//! `rootfs.diff_ids`), in overlayfs' own format so that it serves as a read-only lower
//! dir of every container of every image that has it. OCI whiteouts become overlay
//! whiteouts (`.wh.NAME` → a 0/0 character device `NAME`; `.wh..wh..opq` → the
//! directory's `trusted.overlay.opaque` xattr). A layer is unpacked into
//! `layers/tmp/`, its digest checked, then renamed into place: a failure or a kill
//! leaves nothing under `sha256/`, and what it left in `tmp/` is removed when the agent
//! starts again.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The layer store of one node.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    /// The store under `<images>/layers`.
    pub fn new(images: &Path) -> Self {
        LayerStore {
            dir: images.join("layers"),
        }
    }

    /// Removes what interrupted unpacks and downloads left (the agent, at start: no
    /// pull of its runs then).
    pub fn remove_partial(&self) {
        let _ = fs::remove_dir_all(self.tmp_dir());
    }

    /// Where the layer with this diff ID (`sha256:<hex>`) lives once unpacked.
    pub fn path(&self, diff_id: &str) -> PathBuf {
        let (alg, hex) = diff_id.split_once(':').unwrap_or(("sha256", diff_id));
        self.dir.join(alg).join(hex)
    }

    /// Where unpacks and downloads in progress live (emptied at start).
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Whether the layer is unpacked already.
    pub fn has(&self, diff_id: &str) -> bool {
        self.path(diff_id).is_dir()
    }

    /// Unpacks one layer (a tar, gzip- or zstd-compressed or not: told by its first
    /// bytes) as `diff_id`, checking that the uncompressed tar has that digest; does
    /// nothing if the store has it. Returns the bytes of the uncompressed tar (0 when
    /// it was present).
    pub fn unpack(&self, diff_id: &str, reader: impl Read) -> Result<u64> {
        if self.has(diff_id) {
            return Ok(0);
        }
        let Some(expected) = diff_id.strip_prefix("sha256:") else {
            bail!("unsupported layer digest {diff_id}");
        };
        self.unpack_as(Some(expected), reader).map(|(_, size)| size)
    }

    /// Unpacks a layer whose diff ID is not known beforehand (a `docker save` stream
    /// lists its layers after them): the digest of its uncompressed tar names it.
    /// Returns its diff ID; a layer the store has already is not replaced.
    pub fn unpack_unknown(&self, reader: impl Read) -> Result<String> {
        self.unpack_as(None, reader).map(|(id, _)| id)
    }

    fn unpack_as(&self, expected: Option<&str>, reader: impl Read) -> Result<(String, u64)> {
        let tmp_root = self.dir.join("tmp");
        fs::create_dir_all(&tmp_root)
            .with_context(|| format!("creating {}", tmp_root.display()))?;
        let tmp = tmp_root.join(format!(
            "{}-{}",
            expected.unwrap_or("new"),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            fs::create_dir_all(&tmp)?;
            let mut hashing = Hashing::new(decompress(reader)?);
            apply_overlay_layer(&mut hashing, &tmp)?;
            // The tar may end before the stream does (padding after the end blocks).
            io::copy(&mut hashing, &mut io::sink())?;
            let (actual, size) = hashing.finish();
            if let Some(expected) = expected {
                if actual != expected {
                    bail!("layer digest mismatch: expected sha256:{expected}, got sha256:{actual}");
                }
            }
            let diff_id = format!("sha256:{actual}");
            let dst = self.path(&diff_id);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            match fs::rename(&tmp, &dst) {
                Ok(()) => Ok((diff_id, size)),
                // Another process unpacked it first, or it was there (an unknown one).
                Err(_) if dst.is_dir() => Ok((diff_id, size)),
                Err(e) => Err(e).with_context(|| format!("moving the layer to {}", dst.display())),
            }
        })();
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    /// Puts a layer another node's store has (`from`, on the same filesystem) into
    /// this one as a tree of hard links: read-only lower dirs may share inodes. Built in
    /// `tmp/`, then renamed into place.
    pub fn link_from(&self, diff_id: &str, from: &Path) -> Result<()> {
        if self.has(diff_id) {
            return Ok(());
        }
        let tmp_root = self.tmp_dir();
        fs::create_dir_all(&tmp_root)?;
        let tmp = tmp_root.join(format!("link-{}", uuid::Uuid::new_v4().simple()));
        let result = (|| {
            link_tree(from, &tmp)?;
            let dst = self.path(diff_id);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            match fs::rename(&tmp, &dst) {
                Err(_) if dst.is_dir() => Ok(()),
                r => r.with_context(|| format!("moving the layer to {}", dst.display())),
            }
        })();
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    /// The diff IDs of the layers unpacked.
    pub fn list(&self) -> Vec<String> {
        fs::read_dir(self.dir.join("sha256"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes a layer: renamed out of `sha256/` first, so that a half-removed layer
    /// is never seen. Returns its bytes.
    pub fn remove(&self, diff_id: &str) -> Result<u64> {
        let path = self.path(diff_id);
        if !path.is_dir() {
            return Ok(0);
        }
        let bytes = dir_size(&path);
        let trash = self.tmp_dir();
        fs::create_dir_all(&trash).with_context(|| format!("creating {}", trash.display()))?;
        let gone = trash.join(format!("rm-{}", uuid::Uuid::new_v4().simple()));
        fs::rename(&path, &gone)
            .with_context(|| format!("removing the layer {}", path.display()))?;
        let _ = fs::remove_dir_all(&gone);
        Ok(bytes)
    }

    /// Bytes on disk of an unpacked layer.
    pub fn size(&self, diff_id: &str) -> u64 {
        dir_size(&self.path(diff_id))
    }
}

/// Bytes on disk under `p` (symlinks not followed).
pub fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = p.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// A reader of the layer, decompressed as its magic bytes say (gzip `1f 8b`, zstd
/// `28 b5 2f fd`, else a plain tar).
pub fn decompress<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut reader = io::BufReader::with_capacity(1 << 20, reader);
    let head = io::BufRead::fill_buf(&mut reader)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(reader)?))
    } else {
        Ok(Box::new(reader))
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (format!("{:x}", self.hash.finalize()), self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Unpacks one layer tar into an empty directory in overlayfs' format: whiteouts
/// become 0/0 character devices, opaque markers the `trusted.overlay.opaque` xattr.
pub fn apply_overlay_layer(reader: impl Read, dir: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
        {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dir.join(path.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            fs::create_dir_all(&parent)?;
            xattr::set(&parent, "trusted.overlay.opaque", b"y")
                .with_context(|| format!("marking {} opaque", parent.display()))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            fs::create_dir_all(&parent)?;
            let target = parent.join(hidden);
            remove_any(&target);
            nix::sys::stat::mknod(
                &target,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                nix::sys::stat::makedev(0, 0),
            )
            .with_context(|| format!("making the whiteout {}", target.display()))?;
            continue;
        }
        let target = dir.join(&path);
        if let Ok(meta) = target.symlink_metadata() {
            if !(meta.is_dir() && entry.header().entry_type().is_dir()) {
                remove_any(&target);
            }
        }
        entry
            .unpack_in(dir)
            .with_context(|| format!("unpacking {}", path.display()))?;
    }
    Ok(())
}

/// Copies the tree `from` to `to`: directories made with their mode, owner and
/// xattrs (the opaque marker), whiteouts made anew, symlinks recreated, files
/// hard-linked.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = from.symlink_metadata()?;
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
        for e in fs::read_dir(from)? {
            let e = e?;
            link_tree(&e.path(), &to.join(e.file_name()))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
        for name in xattr::list(from).into_iter().flatten() {
            if let Ok(Some(v)) = xattr::get(from, &name) {
                let _ = xattr::set(to, &name, &v);
            }
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    } else if is_whiteout(&meta) {
        nix::sys::stat::mknod(
            to,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            nix::sys::stat::makedev(0, 0),
        )?;
    } else {
        fs::hard_link(from, to)
            .with_context(|| format!("linking {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

fn remove_any(p: &Path) {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Reads a file of an image made of overlay lower dirs (topmost first) as the
/// container would see it: the first layer that has the path decides, a whiteout or a
/// directory marked opaque above it hides it.
pub fn read_file(lowers: &[PathBuf], rel: &str) -> Option<Vec<u8>> {
    let rel = Path::new(rel);
    for lower in lowers {
        let p = lower.join(rel);
        match p.symlink_metadata() {
            Ok(m) if is_whiteout(&m) => return None,
            Ok(_) => return fs::read(&p).ok(),
            Err(_) => {}
        }
        // An opaque ancestor hides what the layers below have under it.
        let mut anc = rel.parent();
        while let Some(a) = anc {
            if a.as_os_str().is_empty() {
                break;
            }
            if let Ok(Some(v)) = xattr::get(lower.join(a), "trusted.overlay.opaque") {
                if v == b"y" {
                    return None;
                }
            }
            anc = a.parent();
        }
    }
    None
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar of `(path, Some(content))` files and `(path, None)` directories (the other
    /// image modules' tests build their layers with it too).
    pub(crate) fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(d) => {
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    h.set_entry_type(tar::EntryType::Regular);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn diff_id(b: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(b))
    }

    #[test]
    fn unpacks_once_by_diff_id_compressed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::new(dir.path());
        let tar = tar_of(&[("etc/", None), ("etc/motd", Some(b"hi\n"))]);
        let id = diff_id(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(store.unpack(&id, &gz[..]).unwrap(), tar.len() as u64);
        assert_eq!(fs::read(store.path(&id).join("etc/motd")).unwrap(), b"hi\n");
        // Present: not read again.
        assert_eq!(store.unpack(&id, &b"garbage"[..]).unwrap(), 0);

        let other = tar_of(&[("x", Some(b"zstd"))]);
        let zst = zstd::encode_all(&other[..], 3).unwrap();
        store.unpack(&diff_id(&other), &zst[..]).unwrap();
        assert!(store.path(&diff_id(&other)).join("x").exists());
    }

    #[test]
    fn a_digest_mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::new(dir.path());
        store.remove_partial();
        let tar = tar_of(&[("a", Some(b"1"))]);
        let wrong = diff_id(b"something else");
        let err = store.unpack(&wrong, &tar[..]).unwrap_err();
        assert!(
            format!("{err:#}").contains("layer digest mismatch"),
            "{err:#}"
        );
        assert!(!store.has(&wrong));
        let left: Vec<_> = fs::read_dir(dir.path().join("layers/tmp"))
            .unwrap()
            .collect();
        assert!(left.is_empty());
    }

    /// Whiteouts need root (mknod, trusted xattrs).
    #[test]
    #[ignore = "needs root"]
    fn whiteouts_become_overlay_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::new(dir.path());
        let base = tar_of(&[
            ("a/", None),
            ("a/x", Some(b"1")),
            ("b", Some(b"3")),
            ("c", Some(b"4")),
        ]);
        let top = tar_of(&[
            ("a/", None),
            ("a/.wh..wh..opq", Some(b"")),
            ("a/z", Some(b"5")),
            (".wh.b", Some(b"")),
        ]);
        store.unpack(&diff_id(&base), &base[..]).unwrap();
        store.unpack(&diff_id(&top), &top[..]).unwrap();
        let lowers = vec![store.path(&diff_id(&top)), store.path(&diff_id(&base))];
        assert_eq!(read_file(&lowers, "c").unwrap(), b"4");
        assert_eq!(read_file(&lowers, "a/z").unwrap(), b"5");
        assert!(read_file(&lowers, "b").is_none());
        assert!(read_file(&lowers, "a/x").is_none());
        let wh = store
            .path(&diff_id(&top))
            .join("b")
            .symlink_metadata()
            .unwrap();
        assert!(is_whiteout(&wh));
    }
}
