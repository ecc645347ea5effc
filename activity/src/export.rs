//! CSV export that streams pages of a query.
//!
//! Cells follow RFC 4180: fields holding a comma, a double quote, CR or LF are
//! quoted, quotes are doubled, and lines end in CRLF. A cell that starts with `=`,
//! `+`, `-`, `@`, a tab or CR gets a leading `'`, so a spreadsheet shows it as text
//! instead of running it as a formula.

use std::io::Write;

use crate::error::ActivityError;
use crate::event::Event;
use crate::query::Query;
use crate::store::ActivityStore;

/// The header line's column names, in the order of each row.
pub const CSV_COLUMNS: [&str; 17] = [
    "time",
    "tenant",
    "user",
    "device",
    "discovery",
    "app",
    "app_class",
    "client_ip",
    "device_ip",
    "via",
    "request",
    "categories",
    "policy",
    "rule",
    "action",
    "reason",
    "request_id",
];

/// Produces the CSV of a query one page at a time, so memory stays bounded by one
/// page whatever the number of rows.
///
/// Each item is one chunk of bytes: the header line first, then one chunk per page.
/// Iterating blocks on the store, so an HTTP handler runs it on a blocking thread
/// and forwards the chunks to the response body, for example through a channel.
pub struct CsvChunks<'a> {
    store: &'a dyn ActivityStore,
    query: Query,
    state: ChunkState,
}

enum ChunkState {
    Header,
    Rows,
    Done,
}

impl<'a> CsvChunks<'a> {
    /// Starts an export of every event that `query` matches, from its cursor on.
    /// `query.limit` sets the rows per chunk.
    pub fn new(store: &'a dyn ActivityStore, query: Query) -> Self {
        CsvChunks {
            store,
            query,
            state: ChunkState::Header,
        }
    }
}

impl Iterator for CsvChunks<'_> {
    type Item = Result<Vec<u8>, ActivityError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.state {
            ChunkState::Header => {
                self.state = ChunkState::Rows;
                let mut chunk = Vec::new();
                write_record(&mut chunk, CSV_COLUMNS.iter().copied());
                Some(Ok(chunk))
            }
            ChunkState::Rows => {
                let page = match self.store.query(&self.query) {
                    Ok(page) => page,
                    Err(error) => {
                        self.state = ChunkState::Done;
                        return Some(Err(error));
                    }
                };
                let mut chunk = Vec::with_capacity(page.events.len() * 256);
                for event in &page.events {
                    write_event(&mut chunk, event);
                }
                match page.next_cursor {
                    Some(cursor) => self.query.cursor = Some(cursor),
                    None => self.state = ChunkState::Done,
                }
                if chunk.is_empty() {
                    return None;
                }
                Some(Ok(chunk))
            }
            ChunkState::Done => None,
        }
    }
}

/// Writes the CSV of every event `query` matches to `out`, one page at a time, and
/// returns the number of bytes written.
pub fn write_csv(
    store: &dyn ActivityStore,
    query: Query,
    out: &mut dyn Write,
) -> Result<u64, ActivityError> {
    let mut written = 0;
    for chunk in CsvChunks::new(store, query) {
        let chunk = chunk?;
        out.write_all(&chunk).map_err(ActivityError::Export)?;
        written += chunk.len() as u64;
    }
    out.flush().map_err(ActivityError::Export)?;
    Ok(written)
}

fn write_event(out: &mut Vec<u8>, event: &Event) {
    let time = crate::event::format_time(event.time);
    let client_ip = event.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let device_ip = event.device_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let categories = event.categories.join(";");
    let fields = [
        time.as_str(),
        &event.tenant,
        event.user.as_deref().unwrap_or(""),
        event.device.as_deref().unwrap_or(""),
        event.discovery.as_str(),
        event.app.as_deref().unwrap_or(""),
        event.app_class.as_str(),
        &client_ip,
        &device_ip,
        event.via.as_str(),
        &event.request,
        &categories,
        event.policy.as_deref().unwrap_or(""),
        event.rule.as_deref().unwrap_or(""),
        event.action.as_str(),
        &event.reason,
        event.request_id.as_str(),
    ];
    write_record(out, fields.into_iter());
}

fn write_record<'f>(out: &mut Vec<u8>, fields: impl Iterator<Item = &'f str>) {
    for (index, field) in fields.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_cell(out, field);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes one cell, neutralized against formula injection and quoted if needed.
pub fn write_cell(out: &mut Vec<u8>, value: &str) {
    let neutralize = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote =
        neutralize && value.starts_with(['\t', '\r']) || value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push(b'"');
    }
    if neutralize {
        out.push(b'\'');
    }
    for byte in value.bytes() {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    if quote {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(value: &str) -> String {
        let mut out = Vec::new();
        write_cell(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formula_cells_are_neutralized() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-2+3"), "'-2+3");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tcmd"), "\"'\tcmd\"");
        assert_eq!(cell("\rcmd"), "\"'\rcmd\"");
    }

    #[test]
    fn plain_cells_stay_unquoted() {
        assert_eq!(cell("example.com"), "example.com");
        assert_eq!(cell(""), "");
        assert_eq!(cell("a=b"), "a=b");
    }

    #[test]
    fn special_characters_are_quoted() {
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
    }
}
