use std::process::ExitCode;

fn main() -> ExitCode {
    failover_bot::cli::main()
}
