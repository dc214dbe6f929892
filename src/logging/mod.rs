//! Logging through `tracing`, to the journal or to stderr (DESIGN §5).
//!
//! Under systemd, when `JOURNAL_STREAM` names our stderr (or with
//! `--log-target journald`), entries go natively to journald: `PRIORITY`
//! from the level, `SYSLOG_IDENTIFIER=ferrocorn`, `WORKER_PID` on every
//! entry a worker makes, and the event's own fields (an access entry's
//! `HTTP_METHOD`, `HTTP_STATUS`, ...). Otherwise human-readable lines on
//! stderr, in Gunicorn's shape so existing log parsers keep working:
//!
//! ```text
//! [2026-11-21 23:42:20 +0000] [4242] [INFO] Booting worker with pid: 4242
//! ```
//!
//! The pid is read per event, so a forked worker's lines carry its own pid.
//! Structured fields of an event follow the message as `key=value`.

pub mod access;

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

type JournalHandle = reload::Handle<Option<tracing_journald::Layer>, Registry>;

/// Set when logging to the journal: lets a worker swap in its own layer.
static JOURNAL: OnceLock<JournalHandle> = OnceLock::new();

/// Install the global subscriber at `level` and above, to `target`.
pub fn init(level: Level, target: LogTarget) {
    let journal = match target {
        LogTarget::Stderr => None,
        LogTarget::Journald => journal_layer(None),
        LogTarget::Auto if stderr_is_journal() => journal_layer(None),
        LogTarget::Auto => None,
    };
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(GunicornFormat)
    });
    let using_journal = journal.is_some();
    let (journal, handle) = reload::Layer::new(journal);
    let installed = tracing_subscriber::registry()
        .with(journal)
        .with(stderr)
        .with(LevelFilter::from_level(level))
        .try_init();
    if installed.is_ok() && using_journal {
        let _ = JOURNAL.set(handle);
    }
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

/// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM`
/// is `DEV:INODE` of it, systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
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
        write!(w, "[{}] [{}] [{level}] ", utc_now(), std::process::id())?;
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

/// `YYYY-MM-DD HH:MM:SS +0000`, Gunicorn's timestamp, in UTC.
fn utc_now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000");
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_default()
}
