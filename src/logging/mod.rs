//! Logging through `tracing`: the error log, to the journal, stderr or a
//! file (DESIGN §5; Gunicorn's `errorlog`).
//!
//! Under systemd, when `JOURNAL_STREAM` names our stderr (or with
//! `--log-target journald`), entries go natively to journald: `PRIORITY`
//! from the level, `SYSLOG_IDENTIFIER=ferrocorn`, `WORKER_PID` on every
//! entry a worker makes, and the event's own fields (an access entry's
//! `HTTP_METHOD`, `HTTP_STATUS`, ...). Otherwise human-readable lines on
//! stderr or in the `--error-logfile` file, in Gunicorn's shape (local time,
//! as Gunicorn's `%Y-%m-%d %H:%M:%S %z`) so existing log parsers keep working:
//!
//! ```text
//! [2026-11-21 23:42:20 +0000] [4242] [INFO] Booting worker with pid: 4242
//! ```
//!
//! The pid is read per event, so a forked worker's lines carry its own pid.
//! Structured fields of an event follow the message as `key=value`.

pub mod access;
pub mod file;
pub mod statsd;

use std::fmt;
use std::os::fd::AsFd;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, reload};

use crate::config::LogTarget;
use file::{LogFile, Owner};

type JournalHandle = reload::Handle<Option<tracing_journald::Layer>, Registry>;

/// Set when logging to the journal: lets a worker swap in its own layer.
static JOURNAL: OnceLock<JournalHandle> = OnceLock::new();

/// The error log file, when `--error-logfile` names one.
static ERROR_LOG: OnceLock<LogFile> = OnceLock::new();

/// Where the error log's lines go when they are not journal entries.
#[derive(Clone, Copy)]
struct Lines;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}

/// One event's line: to the error log file if there is one, else stderr.
struct LineWriter;

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match ERROR_LOG.get() {
            Some(file) => file.write_line(buf),
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install the global subscriber at `level` and above: to `error_log`
/// when it is a file, else to `target`.
pub fn init(level: Level, target: LogTarget, error_log: Option<LogFile>) {
    let to_file = error_log.is_some();
    if let Some(file) = error_log {
        let _ = ERROR_LOG.set(file);
    }
    let journal = match target {
        _ if to_file => None,
        LogTarget::Stderr => None,
        LogTarget::Journald => journal_layer(None),
        LogTarget::Auto if stderr_is_journal() => journal_layer(None),
        LogTarget::Auto => None,
    };
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(Lines)
            .event_format(GunicornFormat)
    });
    let using_journal = journal.is_some();
    let (journal, handle) = reload::Layer::new(journal);
    let installed = tracing_subscriber::registry()
        .with(journal)
        .with(stderr)
        .with(statsd::LogCounter)
        .with(LevelFilter::from_level(level))
        .try_init();
    if installed.is_ok() && using_journal {
        let _ = JOURNAL.set(handle);
    }
}

/// Whether the error log goes to the journal.
pub fn journal_active() -> bool {
    JOURNAL.get().is_some()
}

/// The error log file's descriptor, to hand to a worker (`None`: stderr or
/// the journal).
pub fn error_log_fd() -> Option<std::os::fd::RawFd> {
    ERROR_LOG.get().map(LogFile::raw_fd)
}

/// USR1: reopen the error log file (after logrotate moved it), as
/// `owner` for a new file; with `capture`, point stdout and stderr at it
/// again (`--capture-output`).
///
/// Errors: open(2) failed; the old file stays in use.
pub fn reopen_error_log(owner: Owner, capture: bool) -> std::io::Result<()> {
    let Some(file) = ERROR_LOG.get() else {
        return Ok(());
    };
    file.reopen(owner)?;
    if capture {
        capture_output();
    }
    Ok(())
}

/// `--capture-output`: the process's stdout and stderr (the app's
/// `print()`, a C library's messages) go to the error log file.
pub fn capture_output() {
    if let Some(file) = ERROR_LOG.get() {
        file.with_file(|f| {
            for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
                // SAFETY: dup2 onto the standard descriptors, which this
                // process owns; the source is the open log file. Rust's
                // std::io::stdout() writes to fd 1 whatever file it is.
                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(f), target) };
            }
        });
    }
}

/// Local time of `t` with its UTC offset, as `time.strftime` gives it in
/// Gunicorn's log lines (the offset from the C library's `localtime_r`,
/// which honours `TZ`; UTC if it fails).
pub fn local_time(t: std::time::SystemTime) -> time::OffsetDateTime {
    let utc = time::OffsetDateTime::from(t);
    let secs = utc.unix_timestamp() as libc::time_t;
    // SAFETY: localtime_r writes only to the `tm` we pass and is MT-safe;
    // the doubt is glibc reading TZ while another thread sets it, which
    // nothing in ferrocorn does after start-up.
    let offset = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff as i32
        }
    };
    time::UtcOffset::from_whole_seconds(offset)
        .map(|o| utc.to_offset(o))
        .unwrap_or(utc)
}

/// Whether stdout is the journal stream systemd connected (an access log
/// to `-` then becomes journal entries).
pub fn stdout_is_journal() -> bool {
    is_journal_stream(std::io::stdout().as_fd())
}

/// In a freshly forked worker: tag every journal entry with `WORKER_PID`.
pub fn enter_worker(pid: u32) {
    if let Some(handle) = JOURNAL.get() {
        let _ = handle.reload(journal_layer(Some(pid)));
    }
}

fn journal_layer(worker_pid: Option<u32>) -> Option<tracing_journald::Layer> {
    let layer = tracing_journald::layer().ok()?;
    let fields: Vec<(&str, String)> = worker_pid
        .map(|p| ("WORKER_PID", p.to_string()))
        .into_iter()
        .collect();
    Some(
        layer
            .with_syslog_identifier("ferrocorn".into())
            // Our field names are the journal's (HTTP_STATUS, not F_HTTP_STATUS).
            .with_field_prefix(None)
            // syslog's meaning: info is 6 (the default maps it to notice).
            .with_priority_mappings(PriorityMappings {
                info: Priority::Informational,
                debug: Priority::Debug,
                ..PriorityMappings::new()
            })
            .with_custom_fields(fields),
    )
}

/// Whether stderr is the journal stream systemd connected.
fn stderr_is_journal() -> bool {
    is_journal_stream(std::io::stderr().as_fd())
}

/// Whether `fd` is the journal stream systemd connected (`JOURNAL_STREAM`
/// is `DEV:INODE` of it, systemd.exec(5)).
fn is_journal_stream(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(fd) else {
        return false;
    };
    dev.parse() == Ok(stat.st_dev) && ino.parse() == Ok(stat.st_ino)
}

struct GunicornFormat;

impl<S, N> FormatEvent<S, N> for GunicornFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        write!(w, "[{}] [{}] [{level}] ", now(), std::process::id())?;
        let mut visitor = Line {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writeln!(w)
    }
}

struct Line<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for Line<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.result = self.result.and_then(|()| self.w.write_str(value));
        } else {
            self.result = self
                .result
                .and_then(|()| write!(self.w, " {}={value:?}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.result = self.result.and_then(|()| write!(self.w, "{value:?}"));
        } else {
            self.result = self
                .result
                .and_then(|()| write!(self.w, " {}={value:?}", field.name()));
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS +ZZZZ`, Gunicorn's timestamp, in local time.
fn now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    local_time(std::time::SystemTime::now())
        .format(format)
        .unwrap_or_default()
}
