//! The `conveyor` binary: parses the command line and hands over to [`conveyor::run`].

fn main() -> std::process::ExitCode {
    conveyor::main()
}
