fn main() {
    // SIGPIPE stays ignored (Rust's default): a write to a step's ssh that died is an error of
    // that step. A reader of standard output that goes away (`strata plan | head`) ends
    // strata quietly outside a rollout (see `cli::output` and `interrupt::broken_pipe`).
    std::process::exit(strata::cli::main());
}
