//! Standard output for the examples, ended quietly when its reader goes away.
//!
//! `println!` panics when standard output is a pipe whose reader has closed
//! (`factory --progress | head`, `bench_forecast --json | head -c 100`: "failed printing
//! to stdout: Broken pipe", exit 101). A reader that has read what it wanted is not an
//! error the user should see, so the examples write through here: a broken pipe ends the
//! process with success, any other write error ends it with a message and failure.
//!
//! Include it first in an example (`#[macro_use] #[path = "common/out.rs"] mod out;`)
//! so that [`outln!`] and [`out!`] are in scope for the code below it.

#![allow(dead_code, unused_macros)] // each example uses some of them

use std::io::Write;

/// Writes `text` as it is (a whole report at once).
pub fn text(text: &str) {
    ended(write(|out| out.write_all(text.as_bytes())));
}

/// Writes a program's one report: as [`text`], but a reader that went away returns here
/// (the caller still ends with the status the report's content calls for, e.g. `plan`'s
/// 2 for an infeasible scenario) while any other failure to write (a full disk under
/// `> file`) still ends the process with a message and failure, where ignoring every
/// error exited 0 with the file cut short.
pub fn report(text: &str) {
    match write(|out| out.write_all(text.as_bytes())) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => ended(written),
    }
}

/// Writes one formatted line; what [`outln!`] expands to.
pub fn line(args: std::fmt::Arguments<'_>) {
    ended(write(|out| {
        out.write_fmt(args).and_then(|()| out.write_all(b"\n"))
    }));
}

/// Writes formatted text without a newline (a table row built in parts); what [`out!`]
/// expands to.
pub fn part(args: std::fmt::Arguments<'_>) {
    ended(write(|out| out.write_fmt(args)));
}

/// Runs `f` on standard output, locked, and flushes, so a failure shows here.
fn write(
    f: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    f(&mut out).and_then(|()| out.flush())
}

fn ended(written: std::io::Result<()>) {
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` that ends the process quietly on a closed pipe (see the module's doc).
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// `print!` that ends the process quietly on a closed pipe (see the module's doc).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::part(format_args!($($arg)*))
    };
}

/// How a benchmark or tool ends: success, or one `error: …` line on standard error and
/// exit status 1. A call the server refused shows as the status it chose, with the reason
/// from its details (`Unauthenticated: ... [TOKEN_INVALID]`), wherever it sits in the
/// error's chain of causes; anything else shows with its causes on the same line. A `main`
/// returning `anyhow::Result` printed `Error: …` with a stack backtrace whenever
/// `RUST_BACKTRACE` was set, and a refusal's details as raw bytes.
pub fn finish(result: anyhow::Result<()>) -> std::process::ExitCode {
    let Err(e) = result else {
        return std::process::ExitCode::SUCCESS;
    };
    let causes: Vec<String> = e
        .chain()
        .map(|cause| match cause.downcast_ref::<tonic::Status>() {
            Some(s) => c2m_server::auth::status_line(s),
            None => cause.to_string(),
        })
        .collect();
    // A cause that repeats the one before it (a wrapper that shows its source) once.
    let mut line = String::new();
    for c in causes {
        if !line.ends_with(&c) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&c);
        }
    }
    eprintln!("error: {line}");
    std::process::ExitCode::FAILURE
}
