//! Ctrl-C for the runner and signals for its workers, with the C library's `signal` and `kill`
//! (always linked on Linux; no extra crate).

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

unsafe extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn kill(pid: i32, sig: i32) -> i32;
}

extern "C" fn on_signal(_: i32) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turn SIGINT and SIGTERM into a flag that [`interrupted`] reads.
pub fn install() {
    let handler = on_signal as extern "C" fn(i32) as usize;
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal(SIGINT, handler);
        signal(SIGTERM, handler);
    }
}

/// Die quietly on a closed stdout (`ablate grid schema | head`), like other Unix tools, instead
/// of failing a print.
pub fn default_sigpipe() {
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: restoring the default disposition of a signal.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn set_interrupted() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Send `sig` to process `pid` (errors, e.g. an already reaped process, are ignored).
pub fn send(pid: u32, sig: i32) {
    // SAFETY: plain system call on a pid we started.
    unsafe {
        kill(pid as i32, sig);
    }
}

/// Signals that come from outside the process (a user, a scheduler, the out-of-memory killer)
/// rather than from a fault in it (SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE).
pub fn is_external(sig: i32) -> bool {
    matches!(sig, 1 | SIGINT | 3 | SIGKILL | 13 | SIGTERM)
}

/// The usual name of a signal number.
pub fn name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "signal",
    }
}
