//! The `conveyor` binary: parses the command line and hands over to [`conveyor::run`].

/// mimalloc serves every allocation of the process: Rust's through this declaration, C's
/// (tree-sitter's parser, SQLite) through `malloc` itself (the crate's `override` feature,
/// glibc's documented way to replace its allocator). tree-sitter allocates and frees a
/// node at a time from two threads; with glibc's arenas the analyzers ran 7-11 % slower
/// (`bench mining`, alternated; Rust's allocations alone on mimalloc gained nothing). See
/// `docs/bench/2026-12-08-wakeups.md`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    conveyor::main()
}
