//! Logging through `tracing`: human-readable lines on stderr, in Gunicorn's
//! shape so existing log parsers keep working:
//!
//! ```text
//! [2026-11-21 23:42:20 +0000] [4242] [INFO] Booting worker with pid: 4242
//! ```
//!
//! The pid is read per event, so a forked worker's lines carry its own pid.
//! Structured fields of an event follow the message as `key=value`.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Install the global subscriber writing to stderr at `level` and above.
pub fn init(level: Level) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(GunicornFormat)
        .try_init();
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
