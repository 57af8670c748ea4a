//! `skiff image load NAME` from a running engine, `skiff image ls` and `skiff image rm`
//! against a node's store (`--data-dir`), with the real binary. The image is built by
//! Podman from local files (`FROM scratch`, a static busybox and a file in a second
//! layer): nothing is pulled. Docker's daemon does not run here, so `docker` answers
//! that it cannot connect and the image is found in Podman; an unknown name gets both
//! engines' answers. Needs root (Podman's store).

use std::path::Path;
use std::process::{Command, Output};

/// The test's image in Podman, removed on drop.
struct PodmanImage(String);

impl Drop for PodmanImage {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

fn skiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn build(dir: &Path, name: &str) -> PodmanImage {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("bin/busybox")).unwrap();
    std::fs::write(ctx.join("motd"), format!("built for {name}\n")).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY bin /bin\nCOPY motd /etc/motd\nCMD [\"/bin/busybox\", \"cat\", \"/etc/motd\"]\n",
    )
    .unwrap();
    let out = Command::new("podman")
        .args(["build", "-q", "-t", name])
        .arg(&ctx)
        .output()
        .expect("podman (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "podman build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PodmanImage(name.to_string())
}

#[test]
#[ignore = "needs root"]
fn load_by_name_from_podman_then_ls_and_rm() {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("localhost/skiff-load-test-{}:v1", std::process::id());
    let _image = build(tmp.path(), &name);
    let n1 = tmp.path().join("n1");
    let n1s = n1.to_str().unwrap();

    let out = skiff(&["image", "load", &name, "--data-dir", n1s]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("from podman"), "{stderr}");
    assert!(
        stdout.contains(&format!("loaded {name} onto local (2 new layers)")),
        "{stdout}"
    );
    // The image runs as Podman made it: its file is in the node's store.
    let store = skiff_agent::images::ImageStore::new(&n1, Path::new("/bin/busybox"));
    let img = store.resolve(&name).unwrap().expect("loaded");
    assert_eq!(
        img.read_file("etc/motd").unwrap(),
        format!("built for {name}\n").as_bytes()
    );
    assert_eq!(img.config.cmd, ["/bin/busybox", "cat", "/etc/motd"]);

    // Again: the node has it all, nothing is saved or unpacked.
    let out = skiff(&["image", "load", &name, "--data-dir", n1s]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("(0 new layers)"), "{stdout}");

    // crictl's table and -q.
    let out = skiff(&["image", "ls", "--data-dir", n1s]);
    let (stdout, _) = text(&out);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(header, ["IMAGE", "TAG", "IMAGE ID", "SIZE"], "{stdout}");
    let repo = name.rsplit_once(':').unwrap().0;
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with(repo))
        .unwrap_or_else(|| panic!("{stdout}"))
        .split_whitespace()
        .collect();
    let short = img.id.trim_start_matches("sha256:")[..13].to_string();
    assert_eq!(row[..3], [repo, "v1", short.as_str()], "{stdout}");
    assert!(row[3].ends_with("MB"), "{stdout}");
    let out = skiff(&["image", "ls", "-q", "--data-dir", n1s]);
    assert!(
        text(&out).0.lines().any(|l| l == img.id),
        "{:?}",
        text(&out)
    );

    // rm: an unknown name fails as crictl's does; the image goes with its layers.
    let out = skiff(&["image", "rm", "nosuch:v9", "--data-dir", n1s]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no such image nosuch:v9"), "{stderr}");
    assert!(stderr.contains("unable to remove the image(s)"), "{stderr}");
    let out = skiff(&["image", "rm", &name, "--data-dir", n1s]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), format!("Deleted: {name}"));
    assert!(store.resolve(&name).unwrap().is_none());
    assert!(store.layers.list().is_empty(), "{:?}", store.layers.list());

    // A name neither engine has.
    let missing = format!("localhost/skiff-missing-{}:v1", std::process::id());
    let out = skiff(&["image", "load", &missing, "--data-dir", n1s]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is neither a file nor an image of Docker or Podman"),
        "{stderr}"
    );
    assert!(stderr.contains("docker: "), "{stderr}");
    assert!(
        stderr.contains("podman: ") && stderr.contains("image not known"),
        "{stderr}"
    );
}
