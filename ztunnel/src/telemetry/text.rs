//! The text log format without colours: byte for byte tracing-subscriber's `Full` format with ANSI
//! off (timestamp, level, span scope with its fields, target, message, `key=value` fields), written
//! with a fraction of the instructions. Its formatter styles every field name and separator through
//! nu-ansi-term even when colours are off, and formats each piece through `core::fmt`; the
//! access-log record of each request was a fifth of the waypoint's user-space instructions.
//! A terminal still gets tracing-subscriber's coloured format.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats one event as a line (the `FormatEvent` of the text layer).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TextFormat;

/// Formats the fields of events and spans (the `FormatFields` of the text layer).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TextFields;

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records from the `log` crate carry their real target and level as fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_char(' ')?;
        writer.write_str(level_str(meta.level()))?;
        writer.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = FieldVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes `name=value` pairs separated by spaces, the message first without a name.
struct FieldVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl<'w> FieldVisitor<'w> {
    /// Starts a field: the separating space and `name=`; `None` when the field is not shown.
    fn start(&mut self, field: &Field) -> Option<&mut Writer<'w>> {
        let name = field.name();
        // `log.*` fields are the metadata of `log` records, already shown as target and level.
        if self.result.is_err() || name.starts_with("log.") {
            return None;
        }
        if !self.first {
            self.result = self.writer.write_char(' ');
        }
        self.first = false;
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .result
                .and_then(|()| self.writer.write_str(name))
                .and_then(|()| self.writer.write_char('='));
        }
        Some(&mut self.writer)
    }

    fn finish(&mut self, result: fmt::Result) {
        self.result = self.result.and(result);
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        let Some(w) = self.start(field) else { return };
        let result = if message {
            write_sanitized(w, value)
        } else {
            write_debug_str(w, value)
        };
        self.finish(result);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let Some(w) = self.start(field) else { return };
        let result = write_u64(w, value);
        self.finish(result);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let Some(w) = self.start(field) else { return };
        let result = if value < 0 {
            w.write_char('-')
                .and_then(|()| write_u64(w, value.unsigned_abs()))
        } else {
            write_u64(w, value.unsigned_abs())
        };
        self.finish(result);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let Some(w) = self.start(field) else { return };
        let result = w.write_str(if value { "true" } else { "false" });
        self.finish(result);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let name = field.name();
        let Some(w) = self.start(field) else { return };
        let mut result = write_sanitized(w, &value.to_string());
        if let Some(source) = value.source() {
            result = result
                .and_then(|()| write!(w, " {name}.sources=["))
                .and_then(|()| {
                    let mut next = Some(source);
                    let mut first = true;
                    while let Some(err) = next {
                        if !first {
                            w.write_str(", ")?;
                        }
                        first = false;
                        write_sanitized(w, &err.to_string())?;
                        next = err.source();
                    }
                    w.write_char(']')
                });
        }
        self.finish(result);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let message = field.name() == "message";
        let Some(w) = self.start(field) else { return };
        let result = if message {
            write!(Sanitizing(w), "{value:?}")
        } else {
            write!(w, "{value:?}")
        };
        self.finish(result);
    }
}

/// `2026-11-22T12:47:00.123456Z`: UTC with microseconds.
fn write_timestamp(w: &mut impl Write, now: SystemTime) -> fmt::Result {
    let Ok(since) = now.duration_since(UNIX_EPOCH) else {
        return w.write_str("<unknown time>");
    };
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut buf[0..4], year);
    put_digits(&mut buf[5..7], month);
    put_digits(&mut buf[8..10], day);
    put_digits(&mut buf[11..13], of_day / 3600);
    put_digits(&mut buf[14..16], of_day / 60 % 60);
    put_digits(&mut buf[17..19], of_day % 60);
    put_digits(&mut buf[20..26], u64::from(since.subsec_micros()));
    // Only ASCII digits and separators were written.
    w.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shifted so that a 400-year era starts on 0000-03-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes `value` right-aligned into `out` as decimal digits (the leading ones stay as they are).
fn put_digits(out: &mut [u8], mut value: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn write_u64(w: &mut impl Write, mut value: u64) -> fmt::Result {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    w.write_str(std::str::from_utf8(&buf[at..]).map_err(|_| fmt::Error)?)
}

fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// A string as `{:?}` writes it: quoted, escaped. Printable ASCII without quotes or backslashes,
/// the usual case, is copied as it is.
fn write_debug_str(w: &mut impl Write, value: &str) -> fmt::Result {
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        w.write_char('"')?;
        w.write_str(value)?;
        w.write_char('"')
    } else {
        write!(w, "{value:?}")
    }
}

/// A message or error text with terminal control characters escaped, so that logged input cannot
/// drive the terminal of whoever reads the log (the escaping of tracing-subscriber).
fn write_sanitized(w: &mut impl Write, value: &str) -> fmt::Result {
    Sanitizing(w).write_str(value)
}

/// Escapes ESC, BEL, BS, FF, DEL and the C1 controls of what goes through it.
struct Sanitizing<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Sanitizing<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let needs_escape = |c: char| {
            matches!(
                c,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            )
        };
        let mut rest = s;
        while let Some(at) = rest.find(needs_escape) {
            self.0.write_str(&rest[..at])?;
            let mut chars = rest[at..].chars();
            let c = chars.next().ok_or(fmt::Error)?;
            match c {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests;
