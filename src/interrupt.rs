//! Ctrl-C. Outside a rollout it ends strata at once, as usual (nothing has changed yet). While
//! a rollout changes nodes (`graceful()`), the first interrupt starts no new node or batch:
//! each running node finishes or rolls back its apply, then the summary and the audit log are
//! written. A second interrupt ends strata at once; a firewall or sshd change a node was in the
//! middle of is still undone by that node's connectivity guard.
//!
//! The terminal sends SIGINT to its whole foreground process group, so the ssh processes that
//! carry a node's running step are started in their own group (see `transport`) and only strata
//! sees the interrupt.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;

static COUNT: AtomicUsize = AtomicUsize::new(0);
/// How many graceful sections are open (a rollout inside a bootstrap counts once each).
static GRACEFUL: AtomicUsize = AtomicUsize::new(0);
/// The write end of the pipe that wakes the notice thread (-1 before `install`).
static WAKE: AtomicI32 = AtomicI32::new(-1);
static NOTICE: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Whether an interrupt asked the rollout to stop starting nodes.
pub fn requested() -> bool {
    COUNT.load(Ordering::SeqCst) > 0
}

/// How many interrupts arrived so far (a connect that failed while one arrived is retried).
pub fn count() -> usize {
    COUNT.load(Ordering::SeqCst)
}

/// While the returned guard lives, the first Ctrl-C is graceful.
pub fn graceful() -> Graceful {
    GRACEFUL.fetch_add(1, Ordering::SeqCst);
    Graceful(())
}

pub struct Graceful(());

impl Drop for Graceful {
    fn drop(&mut self) {
        GRACEFUL.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Standard output's reader went away. Outside a rollout, end as `SIGPIPE` ends a Unix tool
/// (`strata plan | head`). During one, keep going without output: a node is never abandoned
/// in the middle of its apply because a pager closed (strata ignores `SIGPIPE`, so a write to
/// a step's ssh whose process died is an error of that step, never strata's death).
pub fn broken_pipe() {
    if GRACEFUL.load(Ordering::SeqCst) == 0 {
        // SAFETY: signal(2) and raise(3) have no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
}

/// For a child process between fork and exec (`pre_exec`): ignore SIGINT, so a Ctrl-C that
/// reaches it before it has left strata's process group cannot kill the step it carries.
/// The program it runs sets its own handlers.
pub fn ignore_in_child() -> std::io::Result<()> {
    // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    Ok(())
}

extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe calls here: atomics, write(2), signal(2), raise(3).
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 1 && GRACEFUL.load(Ordering::SeqCst) > 0 {
        let fd = WAKE.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: writes one byte from a static buffer to a pipe we own.
            unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
        }
        return;
    }
    // End as an interrupted process does (status "killed by SIGINT", which shells rely on).
    // SAFETY: signal(2) and raise(3) are async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::raise(libc::SIGINT);
    }
}

/// Take over SIGINT; `notice` runs (on its own thread, not in the signal handler) when the
/// first interrupt of a rollout arrives, to tell the operator what happens now.
pub fn install(notice: impl Fn() + Send + Sync + 'static) {
    let _ = NOTICE.set(Box::new(notice));
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return; // without the pipe, Ctrl-C keeps its default behaviour
    }
    let read_fd = fds[0];
    WAKE.store(fds[1], Ordering::SeqCst);
    std::thread::spawn(move || loop {
        let mut b = [0u8; 1];
        // SAFETY: reads into a local one-byte buffer from the pipe made above.
        let n = unsafe { libc::read(read_fd, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            // Once: a child caught between fork and exec may run this handler and wake us too.
            static SHOWN: std::sync::Once = std::sync::Once::new();
            if let Some(f) = NOTICE.get() {
                SHOWN.call_once(|| f());
            }
        } else if n == 0
            || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            return;
        }
    });
    // SAFETY: a zeroed sigaction is valid; the handler only does async-signal-safe work.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}
