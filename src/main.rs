//! `traffix`: parse the command line, install the TLS provider, run, map errors to exit codes.

/// jemalloc instead of glibc's malloc: a tunnel moves bytes in 16–64 KiB buffers allocated on
/// one thread and freed on another, and glibc trims each freed run at the top of a thread's
/// arena back to the kernel, so the next frame faults zeroed pages in again (about a quarter
/// of the data path's CPU; docs/benchmarks.md, "Where the time goes").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // One rustls crypto provider for the whole process, before anything touches TLS.
    traffix::tls::install_provider();
    let (cli, json) = traffix::cli::parse();
    // `serve` initialises logging from its config; everything else logs at warn unless RUST_LOG says more.
    if !matches!(cli.command, traffix::cli::Command::Serve(_)) {
        let level = if matches!(cli.command, traffix::cli::Command::Node(_) | traffix::cli::Command::Demo(_)) {
            "info"
        } else {
            "warn"
        };
        traffix::telemetry::init(level, false);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("traffix: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(traffix::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            e.print(json);
            std::process::ExitCode::from(e.code.clamp(1, 255) as u8)
        }
    }
}
