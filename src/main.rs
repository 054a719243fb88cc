fn main() {
    // Behave like a Unix tool when the reader goes away (`strata plan | head`): end quietly
    // instead of panicking on a broken pipe.
    // SAFETY: called before any other thread exists; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(strata::cli::main());
}
