//! How every binary of the test bed logs: to standard error, one line per event, colour only on a
//! terminal.
//!
//! A log that goes to a file or a CI log is read with `grep`: so no ANSI escapes unless standard
//! error is a terminal (and never with `NO_COLOR` set to anything non-empty, <https://no-color.org>),
//! and an event whose message or fields hold line breaks (an error chain, a pasted body) stays on
//! its line, the breaks written as `\n`.

use std::io::{IsTerminal as _, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber: `RUST_LOG` if set, else `default_filter` (e.g. `"info"`, or
/// `"warn,testbed=info"`). Call once, first thing in `main`.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(OneLine(std::io::stderr))
        .init();
}

/// Colour when standard error is a terminal and `NO_COLOR` is unset or empty.
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// A writer maker whose writers keep each event on one line.
#[derive(Debug, Clone, Copy)]
pub struct OneLine<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(self.0.make_writer())
    }
}

/// Writes what it is given with every line break but a final one escaped. The formatter writes
/// each event whole in one call, so an event becomes exactly one line.
#[derive(Debug)]
pub struct OneLineWriter<W>(W);

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&one_line(buffer))?;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `text` with `\r` and `\n` written as `\r` and `\n` escapes, except a final line break.
fn one_line(text: &[u8]) -> Vec<u8> {
    let (body, end) = match text.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (text, &b""[..]),
    };
    let mut out = Vec::with_capacity(text.len() + 8);
    for &byte in body {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn an_event_with_line_breaks_is_written_on_one_line() {
        assert_eq!(
            one_line(b"ERROR stopped: cannot bind\ncaused by: in use\r\n\n"),
            b"ERROR stopped: cannot bind\\ncaused by: in use\\r\\n\n".to_vec()
        );
        assert_eq!(one_line(b"INFO plain\n"), b"INFO plain\n".to_vec());
        assert_eq!(one_line(b"no newline"), b"no newline".to_vec());
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn the_writer_passes_the_event_through_whole() {
        let mut sink = Vec::new();
        let mut writer = OneLineWriter(&mut sink);
        let written = writer.write(b"a\nb\n").expect("written");
        assert_eq!(written, 4, "the caller's bytes count as written");
        assert_eq!(sink, b"a\\nb\n");
    }
}
