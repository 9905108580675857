//! Ctrl-C: the first one lets the running children (rspec, docker, which share our process
//! group and get the signal too) finish and the caller clean up (the test database, the
//! entrypoint's mode) and stop; a second one stops the database server at once and exits.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

use anyhow::{anyhow, Result};

use crate::failure::Failure;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Process group of the running database server, 0 when none.
static SERVER_GROUP: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

/// Installs the handler once. When another module already installed a ctrlc handler, that one
/// governs, and the server still dies with this process (it has a parent-death signal).
pub fn install() {
    INSTALL.call_once(|| {
        // `set_handler` also replaces an inherited SIG_IGN (a background job of a script): the
        // suite's children take SIGINT whatever their parent ignored, so we must too.
        let _ = ctrlc::set_handler(on_interrupt);
    });
}

fn on_interrupt() {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        let group = SERVER_GROUP.load(Ordering::SeqCst);
        if group > 0 {
            // SAFETY: kill has no memory-safety preconditions; a stale group only yields ESRCH.
            unsafe { libc::kill(-group, libc::SIGTERM) };
        }
        std::process::exit(130);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) || raised_here()
}

#[cfg(test)]
thread_local! {
    static RAISED_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn raised_here() -> bool {
    RAISED_HERE.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn raised_here() -> bool {
    false
}

/// Ctrl-C as this thread sees it, and only this thread: tests run side by side in one process,
/// and the process-wide flag would stop them all.
#[cfg(test)]
pub fn raise_on_this_thread(raised: bool) {
    RAISED_HERE.with(|r| r.set(raised));
}

/// Fails (as `class`) when Ctrl-C was pressed, so the caller unwinds and its guards clean up.
pub fn check(class: Failure) -> Result<()> {
    if interrupted() {
        Err(anyhow!("interrupted (Ctrl-C)").context(class))
    } else {
        Ok(())
    }
}

/// Records the server's process group for a second Ctrl-C (0 when it stopped).
pub fn set_server_group(pgid: i32) {
    SERVER_GROUP.store(pgid, Ordering::SeqCst);
}
