//! Log lines: `tracing` set up for the CLI, with the two costs a busy `serve` pays per review
//! kept small. Text fields are written without `core::fmt` where their text allows it (the
//! same output as tracing-subscriber's default formatter), and `serve` gathers lines in memory
//! and writes them in batches from one thread, so an answer neither waits on stderr nor wakes
//! a thread per line.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;
use crate::text::{digits, number};

/// Log lines `serve` may hold before a logging thread has to wait for stderr.
pub const BACKLOG_BYTES: usize = 256 * 1024;

/// How long the writer gathers lines after the first one arrives: each batch is one write.
const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// How long the last lines get to reach stderr at exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Sets up `tracing` with the level from `RUST_LOG` (default `info`). With `background` (for
/// `serve`), lines go through [`Background`]; the returned guard flushes them when dropped.
pub fn init(format: LogFormat, background: bool, ansi: bool) -> Option<Flush> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(Timestamp)
        .with_ansi(ansi);
    let (writer, flush) = if background {
        let (writer, flush) = Background::spawn(io::stderr(), BACKLOG_BYTES);
        (BoxMakeWriter::new(writer), Some(flush))
    } else {
        (BoxMakeWriter::new(io::stderr), None)
    };
    let builder = builder.with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.fmt_fields(TextFields).init(),
    }
    flush
}

/// RFC 3339 UTC time to the microsecond, as tracing-subscriber's `SystemTime` writes it, with
/// the date and time of day formatted once per second on each thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timestamp;

/// The last second (9999-12-31T23:59:59Z) before the year takes a fifth digit.
const LAST_FOUR_DIGIT_SECOND: u64 = 253_402_300_799;

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        thread_local! {
            static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let Some(now) = now.ok().filter(|t| t.as_secs() <= LAST_FOUR_DIGIT_SECOND) else {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        let second = now.as_secs();
        let prefix = match SECOND.get() {
            (cached, prefix) if cached == second => prefix,
            _ => {
                let prefix = second_prefix(second);
                SECOND.set((second, prefix));
                prefix
            }
        };
        let text = time_text(prefix, now.subsec_micros());
        w.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// A second's prefix completed with the microseconds and the zone.
fn time_text(prefix: [u8; 20], micros: u32) -> [u8; 27] {
    let mut text = [0; 27];
    text[..20].copy_from_slice(&prefix);
    digits(&mut text[20..26], u64::from(micros));
    text[26] = b'Z';
    text
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch.
fn second_prefix(second: u64) -> [u8; 20] {
    let (days, of_day) = (second / 86_400, second % 86_400);
    let (year, month, day) = civil_date(days);
    let mut text = *b"0000-00-00T00:00:00.";
    digits(&mut text[0..4], year);
    digits(&mut text[5..7], month);
    digits(&mut text[8..10], day);
    digits(&mut text[11..13], of_day / 3600);
    digits(&mut text[14..16], of_day / 60 % 60);
    digits(&mut text[17..19], of_day % 60);
    text
}

/// Year, month and day of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`, with
/// years starting in March so that a leap day ends one).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Text fields as tracing-subscriber's `DefaultFields` writes them: `name=value`, strings
/// quoted as `Debug` quotes them, `%value` as its `Display`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFields;

impl<'a> MakeVisitor<Writer<'a>> for TextFields {
    type Visitor = TextVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> TextVisitor<'a> {
        TextVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes plain fields itself; a field whose text needs the default formatter's care (the
/// message, colours, escapes, raw identifiers) goes to a [`DefaultVisitor`] for that field.
pub struct TextVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    /// The `name=` of a plain field, or `None` when the default formatter must write it.
    fn plain_name(&mut self, field: &Field) -> Option<fmt::Result> {
        let name = field.name();
        if self.writer.has_ansi_escapes()
            || name == "message"
            || name.starts_with("r#")
            || name.starts_with("log.")
        {
            return None;
        }
        let pad = if std::mem::take(&mut self.is_empty) {
            Ok(())
        } else {
            self.writer.write_char(' ')
        };
        Some(pad.and_then(|()| {
            self.writer.write_str(name)?;
            self.writer.write_char('=')
        }))
    }

    fn delegate(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        // The default visitor writes nothing for the `log.` fields of events from the `log`
        // crate (tracing-subscriber's default `tracing-log` feature), not even a space.
        self.is_empty &= field.name().starts_with("log.");
    }

    /// Writes `field` itself through `plain` when there is one and the field is plain, and
    /// through the default visitor otherwise.
    fn record(
        &mut self,
        field: &Field,
        plain: Option<impl FnOnce(&mut Writer<'_>) -> fmt::Result>,
        default: impl FnOnce(&mut DefaultVisitor<'_>),
    ) {
        if self.result.is_err() {
            return;
        }
        if let Some(value) = plain {
            if let Some(name) = self.plain_name(field) {
                self.result = name.and_then(|()| value(&mut self.writer));
                return;
            }
        }
        self.delegate(field, default);
    }
}

/// Text `Debug` writes between quotes unchanged.
fn quotes_verbatim(text: &str) -> bool {
    text.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let quoted = |w: &mut Writer<'_>| {
            w.write_char('"')?;
            w.write_str(value)?;
            w.write_char('"')
        };
        let plain = quotes_verbatim(value).then_some(quoted);
        self.record(field, plain, |v| v.record_str(field, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let plain = |w: &mut Writer<'_>| number(w, value);
        self.record(field, Some(plain), |v| v.record_u64(field, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let plain = |w: &mut Writer<'_>| write!(w, "{value}");
        self.record(field, Some(plain), |v| v.record_i64(field, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let plain = |w: &mut Writer<'_>| w.write_str(if value { "true" } else { "false" });
        self.record(field, Some(plain), |v| v.record_bool(field, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let plain = None::<fn(&mut Writer<'_>) -> fmt::Result>;
        self.record(field, plain, |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let plain = |w: &mut Writer<'_>| write!(w, "{value:?}");
        self.record(field, Some(plain), |v| v.record_debug(field, value));
    }
}

impl VisitOutput<fmt::Result> for TextVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for TextVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// Log lines held in memory for one writing thread. A line is appended under a lock (no
/// thread woken unless the writer is idle); the writer waits [`BATCH_WINDOW`] after the first
/// line, then writes everything gathered at once. Past its limit a logging thread waits for
/// the writer instead of dropping lines. Lines logged after the [`Flush`] go straight to
/// stderr.
#[derive(Clone)]
pub struct Background {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits here for a first line.
    wake: Condvar,
    /// Logging threads wait here while the backlog is full.
    room: Condvar,
    limit: usize,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Flushes the backlog when dropped, waiting at most [`FLUSH_TIMEOUT`] for stderr.
pub struct Flush {
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.pending().closed = true;
        self.shared.wake.notify_one();
        self.shared.room.notify_all();
        let _ = self.done.recv_timeout(FLUSH_TIMEOUT);
    }
}

impl Background {
    /// Starts the writing thread over `out`, holding at most about `limit` bytes of lines.
    pub fn spawn(out: impl Write + Send + 'static, limit: usize) -> (Background, Flush) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
            // A backlog must hold a line, or no line could ever enter it.
            limit: limit.max(1),
        });
        let (finished, done) = mpsc::channel();
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                write_batches(&writer, out);
                drop(finished);
            })
            .map_or_else(
                // Without a thread, lines go straight to stderr, as after the flush.
                |_| shared.pending().closed = true,
                drop,
            );
        let flush = Flush {
            shared: Arc::clone(&shared),
            done,
        };
        (Background { shared }, flush)
    }

    fn push(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = self.shared.pending();
        while pending.lines.len() >= self.shared.limit && !pending.closed {
            pending = self
                .shared
                .room
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if pending.closed {
            drop(pending);
            return io::stderr().write_all(line);
        }
        let idle = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        drop(pending);
        if idle {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.pending();
        while pending.lines.is_empty() && !pending.closed {
            pending = shared
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if pending.lines.is_empty() {
            return;
        }
        // Gather a batch, unless logging threads may soon wait for room.
        if !pending.closed && pending.lines.len() < shared.limit / 2 {
            drop(pending);
            std::thread::sleep(BATCH_WINDOW);
            pending = shared.pending();
        }
        std::mem::swap(&mut pending.lines, &mut batch);
        let was_full = batch.len() >= shared.limit;
        drop(pending);
        if was_full {
            shared.room.notify_all();
        }
        // A log line that cannot be written has nowhere better to go.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
    }
}

impl<'a> MakeWriter<'a> for Background {
    type Writer = &'a Background;

    fn make_writer(&'a self) -> &'a Background {
        self
    }
}

impl Write for &Background {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.push(line)?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
