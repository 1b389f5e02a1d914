//! The benchmark and helper binaries as a user types them: a value they cannot use is
//! refused naming its flag, before anything starts, never a panic, a hang or a report of
//! what did not happen. Each case fails at argument parsing (or at the first check of a
//! URL or an address), so the module runs in seconds once the examples are built.
//!
//! Before: `bench_load --duration NaN` (or `=-1`, and `--timeout`, `--probe-seconds`)
//! panicked in `Duration::from_secs_f64`, `--rate inf` ran an open loop of `u64::MAX`
//! orders, `--rate NaN` printed "offered NaN"; `bench_pooling --concurrency 0` printed "0
//! concurrent clients" after running one, and `--database-url postgress://u:secret@h/db`
//! made the directories `postgress:/u:secret@h/` before the server refused the URL;
//! `bench_scale --campaigns 0` and `--skus 0` panicked on an empty list, and
//! `--plan-time-limit 18446744073709551615` panicked the in-process server's planning
//! cycle; `bench_forecast --trend-sd NaN` (and other overrides the model refuses)
//! panicked, `--half-life -1` was quietly "no decay" and `--only nope` printed empty
//! tables; `bench_planner --time-limit NaN` panicked; `webhook_receiver --secret ""`
//! answered every delivery 400.

use std::process::Command;

fn run(example: &str, args: &[&str], cwd: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(crate::common::example_binary(example))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "0")
        .env_remove("C2M_TOKEN")
        .output()
        .expect("the example runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `example args` exits with a failure that is not a panic, naming `flag`.
fn refused(example: &str, args: &[&str], flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(example, args, dir.path());
    assert!(
        matches!(code, Some(c) if c != 0 && c != 101) && !stderr.contains("panicked"),
        "{example} {args:?}: exit {code:?}, not a refusal:\n{stderr}"
    );
    assert!(
        stderr.contains(flag),
        "{example} {args:?}: the error does not name {flag}:\n{stderr}"
    );
    let made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(made.is_empty(), "{example} {args:?} created {made:?}");
}

#[test]
fn bench_load_refuses_numbers_it_cannot_use() {
    for (args, flag) in [
        (&["--rate", "NaN"][..], "--rate"),
        // A server's pid is only for a server at --addr, and never 0.
        (&["--server-pid", "4242"], "--addr"),
        (
            &["--addr", "http://127.0.0.1:9", "--server-pid", "0"],
            "--server-pid",
        ),
        (&["--rate", "inf"], "--rate"),
        (&["--rate", "0"], "--rate"),
        (&["--rate", "1e300"], "--rate"),
        (&["--duration", "NaN"], "--duration"),
        (&["--duration=-1"], "--duration"),
        (&["--warmup=-1"], "--warmup"),
        (&["--timeout=-1"], "--timeout"),
        (&["--probe-seconds", "NaN"], "--probe-seconds"),
        (&["--overload-factor", "NaN"], "--overload-factor"),
        (&["--overload-rate=-5"], "--overload-rate"),
        (&["--connections", "0"], "--connections"),
        (&["--campaigns", "0"], "--campaigns"),
        (&["--probe-concurrency", "0"], "--probe-concurrency"),
    ] {
        refused("bench_load", args, flag);
    }
}

#[test]
fn bench_pooling_refuses_zeros_and_a_url_of_another_scheme() {
    for (args, flag) in [
        (&["--orders", "0"][..], "--orders"),
        (&["--concurrency", "0"], "--concurrency"),
        (&["--connections", "0"], "--connections"),
        (&["--threshold", "0"], "--threshold"),
    ] {
        refused("bench_pooling", args, flag);
    }
    // Refused by the store's own reading of the URL, creating nothing (checked by
    // `refused`) and showing no password.
    let args = [
        "--orders",
        "1",
        "--database-url",
        "postgress://u:secret@h/db",
    ];
    refused("bench_pooling", &args, "--database-url");
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = run("bench_pooling", &args, dir.path());
    assert!(!stderr.contains("secret"), "{stderr}");
}

#[test]
fn bench_scale_refuses_empty_lists_and_endless_time_limits() {
    for (args, flag) in [
        (&["--campaigns", "0"][..], "--campaigns"),
        (&["--skus", "0"], "--skus"),
        (&["--consumers", "0"], "--consumers"),
        (&["--samples", "0"], "--samples"),
        (&["--plan-time-limit", "0"], "--plan-time-limit"),
        (
            &["--plan-time-limit", "18446744073709551615"],
            "--plan-time-limit",
        ),
    ] {
        refused("bench_scale", args, flag);
    }
}

#[test]
fn bench_forecast_refuses_overrides_the_model_refuses() {
    for (args, flag) in [
        (&["--trend-sd", "NaN"][..], "--trend-sd"),
        (&["--trend-sd=-1"], "--trend-sd"),
        (&["--trend-damping", "0"], "--trend-damping"),
        (&["--prior-shape", "0"], "--prior-shape"),
        (&["--robust-weight", "2"], "--robust-weight"),
        (&["--half-life=-1"], "--half-life"),
        (&["--half-life", "NaN"], "--half-life"),
        (&["--mismatch", "NaN"], "--mismatch"),
        (&["--cancel-scale=-1"], "--cancel-scale"),
        (&["--campaigns", "0"], "--campaigns"),
        (&["--only", "nope"], "--only"),
        (&["--min-past", "5", "--max-past", "2"], "--min-past"),
        (&["--max-past", "1000000"], "--max-past"),
        // A run that never ended, its memory growing, and a probability above 1.
        (&["--mismatch", "100"], "--mismatch"),
        (&["--cancel-scale", "100"], "--cancel-scale"),
    ] {
        refused("bench_forecast", args, flag);
    }
}

#[test]
fn bench_planner_refuses_time_limits_and_gaps_plan_refuses() {
    for (args, flag) in [
        (&["--time-limit", "NaN"][..], "--time-limit"),
        (&["--time-limit", "0"], "--time-limit"),
        (&["--gap", "NaN"], "--gap"),
        (&["--seeds", "0"], "--seeds"),
        (&["--seeds=-1"], "--seeds"),
        // Refused before any solving; it was reported per scenario and the run exited 0.
        (&["--write-scenarios", "no-such-dir"], "--write-scenarios"),
    ] {
        refused("bench_planner", args, flag);
        let dir = tempfile::tempdir().unwrap();
        let (code, _) = run("bench_planner", args, dir.path());
        assert_eq!(code, Some(2), "{args:?}: a usage error, as clap's");
    }
}

/// A time limit out of range is named as it was written: `1e300` was printed back as an
/// f64, 301 digits, by both planner binaries.
#[test]
fn planner_time_limits_out_of_range_are_named_as_written() {
    let scenario = format!(
        "{}/examples/scenarios/kettle-c2m.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    for (example, args) in [
        ("bench_planner", vec!["--time-limit", "1e300"]),
        ("plan", vec![scenario.as_str(), "--time-limit", "1e300"]),
    ] {
        refused(example, &args, "--time-limit");
        let dir = tempfile::tempdir().unwrap();
        let (_, stderr) = run(example, &args, dir.path());
        assert!(
            stderr.contains("--time-limit: 1e300 is not a number of seconds in (0, 86400]"),
            "{example}: {stderr}"
        );
    }
}

/// The in-process servers' limits are named as given: `--steady-max-in-flight 0` was
/// refused as `--max-in-flight`, and `--max-in-flight 0` started a server first.
#[test]
fn bench_load_names_the_limit_it_refuses() {
    for flag in ["--max-in-flight", "--steady-max-in-flight"] {
        let dir = tempfile::tempdir().unwrap();
        let (code, stderr) = run("bench_load", &[flag, "0"], dir.path());
        assert_eq!(code, Some(2), "{flag} 0: {stderr}");
        assert!(
            stderr.contains(&format!("'{flag} <")),
            "{flag} 0 is not named:\n{stderr}"
        );
    }
}

/// An error of a benchmark or the receiver is one `error:` line, without the stack
/// backtrace `main` returning an error printed when `RUST_BACKTRACE` was set.
#[test]
fn tools_end_with_one_error_line_not_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::common::example_binary("webhook_receiver"))
        .args(["--secret", ""])
        .current_dir(dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: --secret is empty"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A token a header cannot carry (a line break pasted into it) is refused naming the
/// flag, before a connection is tried; it was dropped, and the server answered
/// `TOKEN_MISSING` about a token the user had given.
#[test]
fn clients_refuse_a_token_a_header_cannot_carry() {
    let token = "c2m_abc\ndef";
    let addr = "http://127.0.0.1:9";
    refused(
        "storefront",
        &["--addr", addr, "--token", token, "campaign", "cmp_x"],
        "--token",
    );
    refused("story", &["--addr", addr, "--token", token], "--token");
    refused(
        "factory",
        &["--addr", addr, "--token", token, "--factory", "f1"],
        "--token",
    );
    refused(
        "bench_load",
        &["--addr", addr, "--token", token, "--duration", "1"],
        "--token",
    );
}

/// `storefront insights --top 0` and `--bucket-seconds 0` are refused naming the flag:
/// they quietly meant the defaults (the API's reading of 0), not what was typed.
#[test]
fn storefront_insights_refuses_zero_counts() {
    for flag in ["--top", "--bucket-seconds"] {
        refused(
            "storefront",
            &[
                "--addr",
                "http://127.0.0.1:9",
                "insights",
                "cmp_x",
                flag,
                "0",
            ],
            flag,
        );
    }
}

#[test]
fn bench_planner_help_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::common::example_binary("bench_planner"))
        .arg("--help")
        .current_dir(dir.path())
        .output()
        .expect("the example runs");
    assert!(out.status.success(), "exit {:?}", out.status.code());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: bench_planner"));
}

#[test]
fn webhook_receiver_refuses_an_empty_secret_and_names_an_address_it_cannot_take() {
    refused("webhook_receiver", &["--secret", ""], "--secret");
    refused(
        "webhook_receiver",
        &["--secret", "whsec_x", "--listen", "192.0.2.1:8088"],
        "--listen",
    );
}

/// Runs `example args` with its standard output a pipe whose reader has already gone:
/// exit status and standard error.
fn into_closed_pipe(example: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(crate::common::example_binary(example))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(crate::common::closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the example starts")
        .wait_with_output()
        .expect("the example runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An example whose reader goes away ends quietly with success, as `storefront` does:
/// `println!` panicked there ("failed printing to stdout: Broken pipe", exit 101), e.g.
/// `bench_forecast --json | head -c 100`, and `webhook_receiver ... | grep` once grep
/// ended. The receiver is the long-running case: it writes its first line at once and
/// would otherwise wait for deliveries.
#[test]
fn examples_end_quietly_when_their_reader_goes_away() {
    for (example, args) in [
        (
            "bench_forecast",
            &["--campaigns", "3", "--only", "steady", "--json"][..],
        ),
        (
            "webhook_receiver",
            &["--listen", "127.0.0.1:0", "--secret", "whsec_pipe"],
        ),
    ] {
        let (code, stderr) = into_closed_pipe(example, args);
        assert_eq!(
            code,
            Some(0),
            "{example} {args:?}: exit {code:?}:\n{stderr}"
        );
        assert!(stderr.is_empty(), "{example} {args:?} said:\n{stderr}");
    }
}

/// `bench_scale` with one product runs: its hot campaign sold `sku-001`, which a
/// catalogue of one product (`sku-000`) does not have, and every such run failed.
#[test]
fn bench_scale_runs_with_a_single_product() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::common::example_binary("bench_scale"))
        .args([
            "--campaigns",
            "3",
            "--preorders",
            "30",
            "--consumers",
            "5",
            "--skus",
            "1",
            "--ready-batches",
            "1",
            "--hot-orders",
            "20",
            "--samples",
            "5",
            "--probe-orders",
            "3",
            "--concurrency",
            "4",
            "--connections",
            "1",
            "--plan-time-limit",
            "5",
        ])
        .current_dir(dir.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the example runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "exit {:?}:\n{stderr}",
        out.status.code()
    );
    assert!(stdout.contains("1 skus"), "{stdout}");
    let hot = stdout
        .lines()
        .find(|l| l.starts_with("hot campaign: PlacePreorder rate"))
        .unwrap_or_else(|| panic!("no hot campaign line:\n{stdout}"));
    assert!(hot.ends_with('x'), "{hot}");
}
