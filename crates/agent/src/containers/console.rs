//! Terminals for `tty: true` containers and `exec -t`: runc's `--console-socket`
//! protocol (runc makes the pty inside the container and sends its master over a unix
//! socket) and resizing.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

use anyhow::{bail, Context, Result};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening console socket; runc connects and sends the pty master.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens at a fresh path in the temporary directory (bundle paths are too long
    /// for a unix socket address).
    pub fn new() -> Result<ConsoleSocket> {
        let name = format!(
            "skiff-console-{}.sock",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let path = std::env::temp_dir().join(name);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        Ok(ConsoleSocket { listener, path })
    }

    /// The socket path for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for runc to connect and send the pty master.
    pub async fn receive(self) -> Result<File> {
        let (conn, _) = self
            .listener
            .accept()
            .await
            .context("accepting runc's console connection")?;
        let conn = conn.into_std().context("taking the console connection")?;
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 4096];
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut cmsg = nix::cmsg_space!([RawFd; 1]);
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .context("receiving the pty master from runc")?;
            for c in msg.cmsgs().context("reading the control message")? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    if let Some(&fd) = fds.first() {
                        // SAFETY: the kernel just installed this descriptor in our table
                        // for us (SCM_RIGHTS); nothing else owns it.
                        #[allow(unsafe_code)]
                        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                        // Readers use tokio's non-blocking pipe types on it: a blocking
                        // master would park a runtime worker inside read(2).
                        let flags = nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_GETFL)
                            .context("reading the pty master's flags")?;
                        let flags = nix::fcntl::OFlag::from_bits_truncate(flags)
                            | nix::fcntl::OFlag::O_NONBLOCK;
                        nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFL(flags))
                            .context("making the pty master non-blocking")?;
                        return Ok(File::from(owned));
                    }
                }
            }
            bail!("runc sent no pty master")
        })
        .await
        .context("the console receiver panicked")?
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

nix::ioctl_write_ptr_bad!(
    /// TIOCSWINSZ: sets a terminal's window size.
    tiocswinsz,
    libc::TIOCSWINSZ,
    libc::winsize
);

/// Resizes a terminal through its pty master.
pub fn resize(master: &File, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points at a live
    // local; the descriptor is an open pty master owned by `master`.
    #[allow(unsafe_code)]
    let result = unsafe { tiocswinsz(master.as_raw_fd(), &size) };
    if let Err(e) = result {
        tracing::debug!(error = %e, "resizing a terminal");
    }
}
