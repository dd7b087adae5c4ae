//! The CLI's output layer: every line it prints goes through here. A closed pipe
//! (`traffix ledger list | head`) ends the process quietly with exit 0, as `cat` and `ls` do,
//! instead of the panic `println!` raises on EPIPE. Errors print as text, or with `--json` as
//! the API's error body `{"error": CODE, "reason": TEXT}`, on stderr.
#![allow(clippy::print_stdout)] // printing is this module's job

use std::io::Write;

/// Prints a line on stdout (a `println!` that ends the process quietly on a closed pipe).
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Writes to stdout; on a closed pipe exits 0, on any other write error exits 1 with a message.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        exit_on_write_error(&e);
    }
}

fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // The reader has what it wanted (`| head`): nothing is wrong.
        std::process::exit(0);
    }
    eprintln!("traffix: cannot write the output: {e}");
    std::process::exit(1);
}

/// Prints a failure on stderr: `traffix: REASON`, or the API's error body with `--json`.
pub fn error(code: &str, reason: &str, json: bool) {
    if json {
        let body = serde_json::json!({ "error": code, "reason": reason });
        eprintln!("{body}");
    } else {
        eprintln!("traffix: {reason}");
    }
}
