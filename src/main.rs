//! `traffix`: parse the command line, install the TLS provider, run, map errors to exit codes.

/// jemalloc instead of glibc's malloc: a tunnel moves bytes in 16–64 KiB buffers allocated on
/// one thread and freed on another, and glibc trims each freed run at the top of a thread's
/// arena back to the kernel, so the next frame faults zeroed pages in again (about a quarter
/// of the data path's CPU; docs/benchmarks.md, "Where the time goes"). Its background thread
/// (the `background_threads` feature) gives freed pages back on a timer, so memory a burst
/// used returns to the system while the server idles, not only at its next allocation.
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
    // The command runs as a task on the runtime's workers, not inside `block_on` on the main
    // thread: there, a node's tunnel reader (or anything else the command awaits itself) would
    // hand every frame to the workers across threads, a futex wake-up each way.
    let done = rt.block_on(async move { tokio::spawn(traffix::cli::run(cli)).await });
    match done {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            e.print(json);
            std::process::ExitCode::from(e.code.clamp(1, 255) as u8)
        }
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => {
                eprintln!("traffix: {e}");
                std::process::ExitCode::from(1)
            }
        },
    }
}
