//! Settings. Every flag has an environment variable, so the same binary runs from a shell,
//! a unit file or a container without wrapper scripts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to serve gRPC on. Port 0 picks a free port (printed at start).
    #[arg(long, env = "C2M_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Directory for the embedded SQLite database `c2m.db`, created if missing; the first
    /// admin token is written here as `admin.token` whichever store is used.
    #[arg(long, env = "C2M_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL: `postgres://...` for PostgreSQL, `sqlite://PATH` for another SQLite
    /// file. Defaults to `DATA_DIR/c2m.db`. Another scheme, or a URL naming no file (empty,
    /// `sqlite::memory:`), is refused.
    #[arg(long, env = "C2M_DATABASE_URL")]
    pub database_url: Option<String>,

    /// How often the deadline sweeper looks for campaigns past their deadline.
    #[arg(long, env = "C2M_SWEEP_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "C2M_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Calls not answered within this are answered DEADLINE_EXCEEDED; RunPlanning gets
    /// the planning time limit on top, and a client's own deadline can only shorten it.
    #[arg(long, env = "C2M_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// On shutdown (SIGTERM or Ctrl-C), how long calls in flight and open streams have to
    /// finish before the server stops anyway; new connections are refused from the
    /// signal on, and a second signal stops the server at once. What was acknowledged is
    /// stored either way: this bounds how long a stop can take, whatever the peers do.
    #[arg(long, env = "C2M_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long a connection may go without a frame from its peer before the server sends
    /// an HTTP/2 PING; one not answered within --keepalive-timeout closes the connection.
    /// A client that vanished (power cut, a network that dropped it) is noticed so, and
    /// its connection and streams closed, instead of being held until TCP gives up.
    #[arg(long, env = "C2M_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,

    /// How long a new connection has to finish its handshake: one whose peer has not
    /// completed the TLS handshake (when TLS is on) and the HTTP/2 client preface by then
    /// (silent, or stalled part way) is closed without reaching the server.
    #[arg(long, env = "C2M_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a keepalive PING may go unanswered before the connection is closed.
    #[arg(long, env = "C2M_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,

    /// Most calls handled at once across all connections; beyond it calls are refused at
    /// once with RESOURCE_EXHAUSTED (load shedding) rather than queued.
    #[arg(long, env = "C2M_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Most connections open at once. At the limit the server stops accepting until one
    /// closes (new clients wait in the kernel's backlog, then time out connecting), so a
    /// flood of connections costs their count in descriptors and memory, not the
    /// process's limit of descriptors, which the store and the open ones need too.
    #[arg(long, env = "C2M_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most requests handled at once on one connection; further ones wait.
    #[arg(long, env = "C2M_CONCURRENCY_PER_CONNECTION", default_value_t = 256)]
    pub concurrency_per_connection: usize,

    /// Run a planning cycle this often when batches wait; 0 turns the schedule off
    /// (cycles then run on demand, or by `--plan-when-waiting`).
    #[arg(long, env = "C2M_PLAN_EVERY", default_value = "10m", value_parser = parse_duration)]
    pub plan_every: Duration,

    /// Run a planning cycle as soon as this many batches wait; 0 turns this off.
    #[arg(long, env = "C2M_PLAN_WHEN_WAITING", default_value_t = 0)]
    pub plan_when_waiting: usize,

    /// Wall-clock limit for the solver in one cycle (the best plan found by then is kept,
    /// with its gap).
    #[arg(long, env = "C2M_PLAN_TIME_LIMIT", default_value = "30s", value_parser = parse_duration)]
    pub plan_time_limit: Duration,

    /// Wall-clock limit for the solver on each volume GetAdvice prices (the advice plans
    /// the sku at many volumes); a volume with no plan by then is reported in the advice
    /// as not judged (`no_plan`), and the scan goes on. Shorter than --request-timeout:
    /// the whole scan ends before the call's deadline (volumes not reached by then are
    /// reported, `not_reached`).
    #[arg(long, env = "C2M_ADVICE_TIME_LIMIT", default_value = "2s", value_parser = parse_duration)]
    pub advice_time_limit: Duration,

    /// How far ahead a planning cycle plans, in days: batches due within it are planned
    /// (later ones wait for a later cycle), and factory calendars have one entry per
    /// period of it.
    #[arg(long, env = "C2M_PLAN_HORIZON_DAYS", default_value_t = 84)]
    pub plan_horizon_days: i64,

    /// The length of a planning period in days (a week by default): runs are planned per
    /// period and ship at its end.
    #[arg(long, env = "C2M_PLAN_PERIOD_DAYS", default_value_t = 7)]
    pub plan_period_days: i64,

    /// A factory's work order stream sends a heartbeat when nothing else was sent for
    /// this long.
    #[arg(long, env = "C2M_FACTORY_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub factory_heartbeat: Duration,

    /// How often a caught-up work order stream looks for work orders stored by another
    /// replica (plans stored by this process are sent at once).
    #[arg(long, env = "C2M_FACTORY_POLL", default_value = "1s", value_parser = parse_duration)]
    pub factory_poll: Duration,

    /// An event stream (EventService.Subscribe) sends a heartbeat when nothing else was
    /// sent for this long.
    #[arg(long, env = "C2M_EVENT_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub event_heartbeat: Duration,

    /// How often a caught-up event stream, and the webhook worker, read the store in case
    /// a wake-up was missed (commits in this process, and on PostgreSQL in any replica
    /// through LISTEN/NOTIFY, wake them at once).
    #[arg(long, env = "C2M_EVENT_POLL", default_value = "5s", value_parser = parse_duration)]
    pub event_poll: Duration,

    /// A webhook delivery that has no answer within this long fails (and is retried).
    #[arg(long, env = "C2M_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,

    /// Longest wait between two attempts at a failing webhook endpoint (backoff doubles
    /// from one second up to this, with jitter).
    #[arg(long, env = "C2M_WEBHOOK_MAX_BACKOFF", default_value = "10m", value_parser = parse_duration)]
    pub webhook_max_backoff: Duration,

    /// A webhook endpoint that has failed for this long without one success is disabled
    /// (an admin re-enables it, and it resumes where it stopped).
    #[arg(long, env = "C2M_WEBHOOK_DISABLE_AFTER", default_value = "3d", value_parser = parse_duration)]
    pub webhook_disable_after: Duration,

    /// Serve without access control: every call acts as admin. For trying c2m on a
    /// laptop only; never on a network others can reach.
    #[arg(long, env = "C2M_NO_AUTH")]
    pub no_auth: bool,

    /// How long a verified token is trusted without asking the store again (a revoked
    /// token stops working within this time).
    #[arg(long, env = "C2M_TOKEN_CACHE", default_value = "2s", value_parser = parse_duration)]
    pub token_cache: Duration,

    /// PEM certificate chain of the gRPC listener (its own certificate first). With
    /// --tls-key the listener speaks TLS only; without both, plaintext.
    #[arg(long, env = "C2M_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "C2M_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// PEM bundle of the CAs that sign factories' client certificates; turns on mutual
    /// TLS (needs --tls-cert). A client certificate stays optional at the handshake, so
    /// storefronts and admins connect without one, but a factory token is then accepted
    /// only on a connection whose certificate names its factory (a DNS subject
    /// alternative name, or the subject CN when there is none).
    #[arg(long, env = "C2M_TLS_CLIENT_CA", value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,
}

impl Settings {
    /// Settings for tests and examples: a random port, SQLite in `data_dir`, a fast sweeper,
    /// and access control off (the access-control tests turn it on).
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Settings {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            data_dir,
            database_url: None,
            sweep_interval: Duration::from_millis(100),
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            concurrency_per_connection: 256,
            max_in_flight: 1024,
            max_connections: 10_000,
            plan_every: Duration::ZERO,
            plan_when_waiting: 0,
            plan_time_limit: Duration::from_secs(20),
            advice_time_limit: Duration::from_secs(2),
            plan_horizon_days: 84,
            plan_period_days: 7,
            factory_heartbeat: Duration::from_millis(500),
            factory_poll: Duration::from_millis(200),
            event_heartbeat: Duration::from_millis(500),
            event_poll: Duration::from_millis(500),
            webhook_timeout: Duration::from_secs(2),
            webhook_max_backoff: Duration::from_millis(400),
            webhook_disable_after: Duration::from_secs(60),
            no_auth: true,
            token_cache: Duration::from_millis(100),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }

    /// Refuses settings the server cannot run with, naming the flag: a zero where a
    /// positive duration or count is needed (`--sweep-interval 0` panicked the sweeper on
    /// every start, so no deadline was ever enforced; `--request-timeout 0` failed every
    /// call; `--concurrency-per-connection 0` hung every call; `--plan-time-limit 0` left
    /// every cycle to the greedy rules, and `--advice-time-limit 0` every advised volume),
    /// an `--advice-time-limit` not shorter than `--request-timeout` (naming both), and a
    /// planning horizon [`Settings::plan_horizon`] refuses. Zero stays allowed where it means "off" (`--plan-every`,
    /// `--plan-when-waiting`) or "no caching" (`--token-cache`). Checked before anything
    /// is created or opened.
    pub fn check(&self) -> Result<PlanHorizon, String> {
        let positive = [
            ("--sweep-interval", self.sweep_interval),
            ("--request-timeout", self.request_timeout),
            ("--shutdown-grace", self.shutdown_grace),
            ("--keepalive-interval", self.keepalive_interval),
            ("--keepalive-timeout", self.keepalive_timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--plan-time-limit", self.plan_time_limit),
            ("--advice-time-limit", self.advice_time_limit),
            ("--factory-heartbeat", self.factory_heartbeat),
            ("--factory-poll", self.factory_poll),
            ("--event-heartbeat", self.event_heartbeat),
            ("--event-poll", self.event_poll),
            ("--webhook-timeout", self.webhook_timeout),
            ("--webhook-max-backoff", self.webhook_max_backoff),
        ];
        for (flag, d) in positive {
            if d.is_zero() {
                return Err(format!("{flag} must be longer than 0"));
            }
        }
        // At most MAX_DURATION, as `c2m serve` parses them: Settings built in code (the
        // benchmarks, an embedding program) skip that parser, and `bench_scale
        // --plan-time-limit 18446744073709551615` panicked the planning cycle with
        // "overflow when multiplying duration by scalar".
        let bounded = positive.into_iter().chain([
            ("--plan-every", self.plan_every),
            ("--webhook-disable-after", self.webhook_disable_after),
            ("--token-cache", self.token_cache),
        ]);
        for (flag, d) in bounded {
            if d > MAX_DURATION {
                return Err(format!(
                    "{flag} must be at most {} days",
                    MAX_DURATION.as_secs() / 86_400
                ));
            }
        }
        let counts = [
            ("--max-message-bytes", self.max_message_bytes),
            ("--max-in-flight", self.max_in_flight),
            ("--max-connections", self.max_connections),
            (
                "--concurrency-per-connection",
                self.concurrency_per_connection,
            ),
        ];
        for (flag, n) in counts {
            if n == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        // See MIN_MESSAGE_BYTES: one byte started a server that refused every call.
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(format!(
                "--max-message-bytes must be at least {MIN_MESSAGE_BYTES} (16 KiB), got {}",
                self.max_message_bytes
            ));
        }
        // These limits are semaphores, which hold at most `MAX_PERMITS` permits: a larger
        // one panicked the server at start (`--max-in-flight`) or on the first connection
        // (`--concurrency-per-connection`).
        let permits = [
            ("--max-in-flight", self.max_in_flight),
            ("--max-connections", self.max_connections),
            (
                "--concurrency-per-connection",
                self.concurrency_per_connection,
            ),
        ];
        for (flag, n) in permits {
            if n > MAX_CONCURRENCY {
                return Err(format!("{flag} must be at most {MAX_CONCURRENCY}, got {n}"));
            }
        }
        // GetAdvice plans volume after volume within one call: a volume allowed the whole
        // call's budget would leave the scan no time to answer with.
        if self.advice_time_limit >= self.request_timeout {
            return Err(format!(
                "--advice-time-limit ({:?}) must be shorter than --request-timeout ({:?}): \
                 GetAdvice plans many volumes, each for up to --advice-time-limit, and answers \
                 within --request-timeout",
                self.advice_time_limit, self.request_timeout
            ));
        }
        if let Some(url) = &self.database_url {
            c2m_store::check_url(url)
                .map_err(|e| format!("--database-url {:?}: {e}", crate::app::redact(url)))?;
        }
        self.plan_horizon()
    }

    /// The planning horizon the settings give: `ceil(horizon / period)` periods of
    /// `period` days. Refused (naming the flag) when a number is not positive, the period
    /// is longer than the horizon, or there would be more than [`MAX_PLAN_PERIODS`].
    pub fn plan_horizon(&self) -> Result<PlanHorizon, String> {
        let (horizon, period) = (self.plan_horizon_days, self.plan_period_days);
        if !(1..=366).contains(&period) {
            return Err(format!(
                "--plan-period-days must be between 1 and 366, got {period}"
            ));
        }
        if horizon < period || horizon > 3 * 366 {
            return Err(format!(
                "--plan-horizon-days must be at least the period ({period} days) and at most \
                 1098, got {horizon}"
            ));
        }
        let periods = (horizon + period - 1) / period;
        if periods > MAX_PLAN_PERIODS {
            return Err(format!(
                "--plan-horizon-days {horizon} in periods of {period} days is {periods} \
                 periods; at most {MAX_PLAN_PERIODS}"
            ));
        }
        Ok(PlanHorizon {
            periods,
            period_days: period,
        })
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("c2m.db").display()),
        }
    }
}

/// Largest `--max-in-flight` and `--concurrency-per-connection`: the most permits a
/// semaphore holds.
pub const MAX_CONCURRENCY: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// The smallest `--max-message-bytes` the server starts with. The limit bounds memory;
/// one byte, accepted before, started a server that refused every call. 16 KiB is a floor,
/// not a recommendation: under it a larger request or page answers `OUT_OF_RANGE`, and
/// the event stream splits a large event into parts that fit.
pub const MIN_MESSAGE_BYTES: usize = 16 * 1024;

/// Most periods a planning horizon may have (the model grows with them).
pub const MAX_PLAN_PERIODS: i64 = 104;

/// A planning cycle's horizon: `periods` periods of `period_days` days, period 0 starting
/// when the cycle plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanHorizon {
    pub periods: i64,
    pub period_days: i64,
}

impl PlanHorizon {
    /// The planner's horizon.
    pub fn scenario_horizon(self) -> c2m_planner::Horizon {
        c2m_planner::Horizon {
            periods: self.periods,
            period_days: self.period_days,
        }
    }
}

/// Parses `250ms`, `2s`, `5m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 2s or 5m"))?;
    // Checked, and at most MAX_DURATION: `1000000000000000d` overflowed the multiplication
    // (a panic in a debug build, a wrapped and much shorter duration in a release build),
    // and a duration near u64::MAX seconds overflowed later sums (the webhook worker's
    // lease, three timeouts long, panicked on every restart).
    let too_long = || {
        format!(
            "{s:?} is longer than {} days, the longest duration c2m takes",
            MAX_DURATION.as_secs() / 86_400
        )
    };
    let seconds = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .filter(|d| *d <= MAX_DURATION)
            .ok_or_else(too_long)
    };
    match unit {
        "ms" => Some(Duration::from_millis(n))
            .filter(|d| *d <= MAX_DURATION)
            .ok_or_else(too_long),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => Err(format!(
            "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
        )),
    }
}

/// The longest duration a flag takes (100 years of days): long enough for "never" in
/// practice, short enough that no sum of a few of them overflows a `Duration` or an
/// `Instant`.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("3d").unwrap(),
            Duration::from_secs(3 * 86_400)
        );
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("x").is_err());
        // Past u64 seconds, or past a hundred years: refused, not a panic (debug) or a
        // wrapped duration (release) now, or an overflow later.
        let e = parse_duration("1000000000000000d").unwrap_err();
        assert!(e.contains("longer than 36500 days"), "{e}");
        for long in ["18446744073709551615s", "36501d", "18446744073709551615ms"] {
            assert!(parse_duration(long).is_err(), "{long}");
        }
        assert_eq!(parse_duration("36500d").unwrap(), MAX_DURATION);
    }

    #[test]
    fn zeros_that_would_break_the_server_are_refused_naming_the_flag() {
        let ok = Settings::for_tests(PathBuf::from("x"));
        assert!(ok.check().is_ok());
        type Zero = fn(&mut Settings);
        let cases: [(&str, Zero); 18] = [
            ("--sweep-interval", |s| s.sweep_interval = Duration::ZERO),
            ("--request-timeout", |s| s.request_timeout = Duration::ZERO),
            ("--shutdown-grace", |s| s.shutdown_grace = Duration::ZERO),
            ("--keepalive-interval", |s| {
                s.keepalive_interval = Duration::ZERO
            }),
            ("--keepalive-timeout", |s| {
                s.keepalive_timeout = Duration::ZERO
            }),
            ("--handshake-timeout", |s| {
                s.handshake_timeout = Duration::ZERO
            }),
            ("--plan-time-limit", |s| s.plan_time_limit = Duration::ZERO),
            ("--advice-time-limit", |s| {
                s.advice_time_limit = Duration::ZERO
            }),
            ("--factory-heartbeat", |s| {
                s.factory_heartbeat = Duration::ZERO
            }),
            ("--factory-poll", |s| s.factory_poll = Duration::ZERO),
            ("--event-heartbeat", |s| s.event_heartbeat = Duration::ZERO),
            ("--event-poll", |s| s.event_poll = Duration::ZERO),
            ("--webhook-timeout", |s| s.webhook_timeout = Duration::ZERO),
            ("--webhook-max-backoff", |s| {
                s.webhook_max_backoff = Duration::ZERO
            }),
            ("--max-message-bytes", |s| s.max_message_bytes = 0),
            ("--max-in-flight", |s| s.max_in_flight = 0),
            ("--max-connections", |s| s.max_connections = 0),
            ("--concurrency-per-connection", |s| {
                s.concurrency_per_connection = 0
            }),
        ];
        for (flag, zero) in cases {
            let mut s = ok.clone();
            zero(&mut s);
            let e = s.check().unwrap_err();
            assert!(e.starts_with(flag), "{flag}: {e}");
        }
        // Longer than `c2m serve` parses (Settings made in code): refused, not a panic.
        let mut long = ok.clone();
        long.plan_time_limit = Duration::from_secs(u64::MAX);
        let e = long.check().unwrap_err();
        assert!(
            e.starts_with("--plan-time-limit must be at most 36500 days"),
            "{e}"
        );
        let mut long = ok.clone();
        long.plan_every = MAX_DURATION + Duration::from_secs(1);
        assert!(long.check().unwrap_err().starts_with("--plan-every"));
        // Zero where it means off, or no caching, stays allowed.
        let mut off = ok.clone();
        off.plan_every = Duration::ZERO;
        off.plan_when_waiting = 0;
        off.token_cache = Duration::ZERO;
        assert!(off.check().is_ok());
        // A database URL of another scheme is refused before anything is created (it was
        // taken as a SQLite file path: `mysql://db/c2m` ran on ./mysql:/db/c2m).
        for url in ["mysql://db/c2m", "postgress://h/db", "postgres:/h/db"] {
            let mut s = ok.clone();
            s.database_url = Some(url.into());
            let e = s.check().unwrap_err();
            assert!(e.starts_with(&format!("--database-url {url:?}: ")), "{e}");
        }
        // A PostgreSQL URL without a database: c2m installed itself in the database named
        // after the user. With one, as a path or `dbname`, it is taken.
        // (`PGDATABASE` would name one: this case needs it unset, as it is in CI; the
        // e2e case `a_postgres_url_naming_no_database_...` runs c2m without it either way.)
        let no_env_database = std::env::var_os("PGDATABASE").is_none();
        if !no_env_database {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: the URL-without-a-database case of zeros_that_would_break_the_server_are_refused_naming_the_flag \
                 (PGDATABASE is set)"
            );
        }
        for url in [
            "postgres://postgres@h/",
            "postgres://postgres@h",
            "postgresql://h:5432/",
        ]
        .into_iter()
        .filter(|_| no_env_database)
        {
            let mut s = ok.clone();
            s.database_url = Some(url.into());
            let e = s.check().unwrap_err();
            assert!(
                e.starts_with(&format!("--database-url {url:?}: names no database")),
                "{e}"
            );
        }
        for url in ["postgres://postgres@h/c2m", "postgres://h/?dbname=c2m"] {
            let mut s = ok.clone();
            s.database_url = Some(url.into());
            assert!(s.check().is_ok(), "{url}: {:?}", s.check());
        }
        // A URL naming no file is refused: SQLite took it as a private in-memory or
        // temporary database (the server failed after saying it was ready).
        for url in [
            "",
            " ",
            "sqlite://",
            "sqlite:",
            "sqlite::memory:",
            ":memory:",
        ] {
            let mut s = ok.clone();
            s.database_url = Some(url.into());
            let e = s.check().unwrap_err();
            assert!(e.starts_with(&format!("--database-url {url:?}: ")), "{e}");
        }
        for url in [
            "postgres://h/db",
            "postgresql://h/db",
            "sqlite://x.db",
            "x/c2m.db",
        ] {
            let mut s = ok.clone();
            s.database_url = Some(url.into());
            assert!(s.check().is_ok(), "{url}");
        }
        // A message limit too small for the API's own calls is refused naming the flag.
        for n in [1, MIN_MESSAGE_BYTES - 1] {
            let mut s = ok.clone();
            s.max_message_bytes = n;
            let e = s.check().unwrap_err();
            assert!(
                e.starts_with("--max-message-bytes must be at least 16384"),
                "{e}"
            );
        }
        let mut s = ok.clone();
        s.max_message_bytes = MIN_MESSAGE_BYTES;
        assert!(s.check().is_ok());
        // A limit a semaphore cannot hold is refused naming the flag (it panicked).
        for (flag, set) in [
            (
                "--max-in-flight",
                (|s, n| s.max_in_flight = n) as fn(&mut Settings, usize),
            ),
            ("--max-connections", |s, n| s.max_connections = n),
            ("--concurrency-per-connection", |s, n| {
                s.concurrency_per_connection = n
            }),
        ] {
            let mut s = ok.clone();
            set(&mut s, usize::MAX);
            let e = s.check().unwrap_err();
            assert!(e.starts_with(&format!("{flag} must be at most")), "{e}");
            set(&mut s, MAX_CONCURRENCY);
            assert!(s.check().is_ok(), "{flag}");
        }
        // A refused URL's password is not shown (it goes to logs).
        let mut s = ok.clone();
        s.database_url = Some("postgress://u:hunter2@h/db".into());
        let e = s.check().unwrap_err();
        assert!(
            e.starts_with("--database-url \"postgress://u:***@h/db\": "),
            "{e}"
        );
        // The horizon is part of the check.
        let mut bad = ok;
        bad.plan_period_days = 0;
        assert!(bad.check().unwrap_err().starts_with("--plan-period-days"));
    }

    /// GetAdvice plans volume after volume within one call: a volume's time limit as long
    /// as the call's would leave the scan nothing to answer with.
    #[test]
    fn an_advice_time_limit_not_below_the_request_timeout_is_refused_naming_both() {
        let mut s = Settings::for_tests(PathBuf::from("x"));
        s.request_timeout = Duration::from_secs(5);
        for limit in [5, 6] {
            s.advice_time_limit = Duration::from_secs(limit);
            let e = s.check().unwrap_err();
            assert!(e.starts_with("--advice-time-limit"), "{e}");
            assert!(e.contains("--request-timeout (5s)"), "{e}");
        }
        s.advice_time_limit = Duration::from_millis(4_999);
        assert!(s.check().is_ok());
    }

    #[test]
    fn plan_horizons_are_checked() {
        let mut s = Settings::for_tests(PathBuf::from("x"));
        assert_eq!(
            s.plan_horizon().unwrap(),
            PlanHorizon {
                periods: 12,
                period_days: 7
            }
        );
        s.plan_horizon_days = 45;
        assert_eq!(s.plan_horizon().unwrap().periods, 7);
        for (h, p, flag) in [
            (84, 0, "--plan-period-days"),
            (84, -7, "--plan-period-days"),
            (3, 7, "--plan-horizon-days"),
            (1000, 1, "--plan-horizon-days"),
        ] {
            (s.plan_horizon_days, s.plan_period_days) = (h, p);
            let e = s.plan_horizon().unwrap_err();
            assert!(e.starts_with(flag), "{e}");
        }
    }
}
