//! Which plugin call a crashing worker was in.
//!
//! A plugin that segfaults, aborts or calls `exit` takes the worker process with it, and the
//! runner could only say "killed by signal 11". While a plugin call runs, [`enter`] records
//! which (kind, name, library, method) in two static slots; fatal signal handlers ([`install`])
//! and an `atexit` hook print it to stderr, where the runner's capture of the worker's last
//! lines puts it into the cell's `status.json`. The handlers only read the slots and call
//! `write`, which is async-signal-safe, then re-raise the signal with its default action.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The subject of the call in progress, e.g. ``integrator plugin `sgld` (/p/lib.so)`` (leaked
/// once per factor).
static SUBJECT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static SUBJECT_LEN: AtomicUsize = AtomicUsize::new(0);
/// The method of the call in progress (a string literal).
static METHOD: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static METHOD_LEN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn signal(signum: i32, handler: usize) -> usize;
    fn raise(sig: i32) -> i32;
    fn atexit(f: extern "C" fn()) -> i32;
}

const SIG_DFL: usize = 0;
/// SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV on Linux.
const FATAL: [i32; 5] = [4, 6, 7, 8, 11];

/// The plugin call in progress until the guard is dropped (calls do not nest across plugins;
/// the previous one is restored anyway).
#[must_use]
pub struct InCall {
    previous: (*mut u8, usize, *mut u8, usize),
}

/// Record that `subject` (a [`subject`] string) is running `method`.
pub fn enter(subject: &'static str, method: &'static str) -> InCall {
    let previous = (
        SUBJECT.load(Ordering::Acquire),
        SUBJECT_LEN.load(Ordering::Acquire),
        METHOD.load(Ordering::Acquire),
        METHOD_LEN.load(Ordering::Acquire),
    );
    set(subject.as_ptr().cast_mut(), subject.len(), method.as_ptr().cast_mut(), method.len());
    InCall { previous }
}

impl Drop for InCall {
    fn drop(&mut self) {
        let (s, sl, m, ml) = self.previous;
        set(s, sl, m, ml);
    }
}

fn set(subject: *mut u8, subject_len: usize, method: *mut u8, method_len: usize) {
    // Null first, so that a handler never pairs a pointer with another string's length.
    SUBJECT.store(std::ptr::null_mut(), Ordering::Release);
    METHOD.store(std::ptr::null_mut(), Ordering::Release);
    SUBJECT_LEN.store(subject_len, Ordering::Release);
    METHOD_LEN.store(method_len, Ordering::Release);
    SUBJECT.store(subject, Ordering::Release);
    METHOD.store(method, Ordering::Release);
}

/// The subject of a factor's calls, e.g. ``integrator plugin `sgld` (/p/lib.so)``: static, so
/// that a signal handler may read it at any time. Interned: each distinct plugin is allocated
/// once per process, however many factors (grid checks build some per cell) name it.
pub fn subject(kind: &str, name: &str, path: &str) -> &'static str {
    static SUBJECTS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let text = format!("{kind} plugin `{name}` ({path})");
    let mut known = SUBJECTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = known.iter().find(|s| **s == text) {
        return s;
    }
    let s: &'static str = Box::leak(text.into_boxed_str());
    known.push(s);
    s
}

/// Install the fatal-signal handlers and the `exit` hook (once, in the worker).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let handler = on_fatal_signal as extern "C" fn(i32) as usize;
        // SAFETY: the handler only loads atomics, calls `write` and restores/raises the signal,
        // all async-signal-safe; `atexit` registers a plain function.
        unsafe {
            for sig in FATAL {
                signal(sig, handler);
            }
            atexit(on_exit);
        }
    });
}

extern "C" fn on_fatal_signal(sig: i32) {
    report(b"the worker crashed inside ");
    // SAFETY: back to the default action, then the same signal again: the process ends as it
    // would have (core dump, exit status by signal), after the line above.
    unsafe {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

extern "C" fn on_exit() {
    report(b"the worker exited from inside ");
}

/// ``<what><subject> during `<method>` `` and a line break on stderr, when a plugin call is in
/// progress.
fn report(what: &[u8]) {
    let subject = SUBJECT.load(Ordering::Acquire);
    let method = METHOD.load(Ordering::Acquire);
    if subject.is_null() || method.is_null() {
        return;
    }
    let (subject_len, method_len) = (SUBJECT_LEN.load(Ordering::Acquire), METHOD_LEN.load(Ordering::Acquire));
    // SAFETY: the pointers and lengths come from `&'static str`s stored by `enter` (a leaked
    // subject, a literal method); fd 2 is stderr.
    unsafe {
        write(2, what.as_ptr(), what.len());
        write(2, subject, subject_len);
        write(2, b" during `".as_ptr(), 9);
        write(2, method, method_len);
        write(2, b"`\n".as_ptr(), 2);
    }
}

#[cfg(test)]
mod tests {
    /// One allocation per distinct plugin, whatever the number of factors naming it.
    #[test]
    fn subjects_are_interned() {
        let a = super::subject("prior", "gaussian", "/p/lib.so");
        let b = super::subject("prior", "gaussian", "/p/lib.so");
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "prior plugin `gaussian` (/p/lib.so)");
        assert!(!std::ptr::eq(a, super::subject("prior", "laplace", "/p/lib.so")));
    }
}
