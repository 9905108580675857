//! Lock files: an exclusive `flock` taken without waiting, and the note its holder wrote in
//! (the sandbox's lock, the deploy lock). The OS drops the lock when its holder exits.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;

/// Takes an exclusive `flock` on `file` without waiting: `false` when another holds it (the
/// sandbox's lock and the deploy lock).
pub fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// What the holder of a lock file wrote into it.
pub fn holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}
