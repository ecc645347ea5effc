//! Feed parsers: hosts files, plain domain lists, AdBlock-style filter lists and the
//! `urls` files of category directories.
//!
//! Parsers never fail on content: a line they cannot use is skipped and counted with its
//! reason, so a broken line, binary junk or an enormous line is reported, not fatal.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::name::normalize_name;

/// Lines longer than this are skipped without being parsed.
pub const MAX_LINE_LEN: usize = 4096;

/// How many skipped lines a feed keeps as examples for reports.
const SKIPPED_EXAMPLES: usize = 5;

/// The format of a feed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedFormat {
    /// `0.0.0.0 name` / `127.0.0.1 name` lines, `#` comments.
    Hosts,
    /// One domain (or IP address) per line, `#` comments.
    Domains,
    /// AdBlock-style filter list: `!` comments, `||host^`, `||host/path^`, options after `$`,
    /// bare hosts and IP addresses.
    Adblock,
    /// A directory with one folder per category, each with a `domains` file and an optional
    /// `urls` file (the UT1 and Shalla layout).
    Directory,
}

impl FeedFormat {
    /// Parses the format name used in policy files.
    pub fn parse(name: &str) -> Option<FeedFormat> {
        match name {
            "hosts" => Some(FeedFormat::Hosts),
            "domains" => Some(FeedFormat::Domains),
            "adblock" => Some(FeedFormat::Adblock),
            "directory" => Some(FeedFormat::Directory),
            _ => None,
        }
    }

    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedFormat::Hosts => "hosts",
            FeedFormat::Domains => "domains",
            FeedFormat::Adblock => "adblock",
            FeedFormat::Directory => "directory",
        }
    }
}

/// One usable entry of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedEntry<'a> {
    /// A normalized domain; it covers its subdomains.
    Domain(Cow<'a, str>),
    /// An IP address.
    Ip(IpAddr),
    /// A URL prefix: normalized host (covering subdomains) and lower-case path prefix.
    Url(UrlPrefix),
}

/// A URL-prefix entry: host plus path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlPrefix {
    /// Normalized host name, or an IP address in text form.
    pub(crate) host: String,
    /// Lower-case path prefix starting with `/`, with the query when the entry has one.
    pub(crate) path: String,
    /// True when the entry ended with the AdBlock separator `^`: the URL must end right
    /// after the prefix or continue with a separator character.
    pub(crate) separator_end: bool,
}

/// A skipped line kept as an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number in the feed file.
    pub line: usize,
    /// The reason the line was skipped.
    pub reason: String,
}

/// Counts from loading a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Entries loaded (domains, IP addresses and URL prefixes).
    pub entries: usize,
    /// Lines that held something but could not be used.
    pub skipped: usize,
    /// The first few skipped lines with their reasons.
    pub skipped_examples: Vec<SkippedLine>,
}

impl FeedStats {
    fn skip(&mut self, line: usize, reason: impl Into<String>) {
        self.skipped += 1;
        if self.skipped_examples.len() < SKIPPED_EXAMPLES {
            self.skipped_examples.push(SkippedLine {
                line,
                reason: reason.into(),
            });
        }
    }

    /// Adds another file's counts (for category directories).
    pub(crate) fn absorb(&mut self, other: FeedStats) {
        self.entries += other.entries;
        self.skipped += other.skipped;
        for example in other.skipped_examples {
            if self.skipped_examples.len() < SKIPPED_EXAMPLES {
                self.skipped_examples.push(example);
            }
        }
    }
}

/// The kind of line-oriented file to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineFormat {
    Hosts,
    Domains,
    Adblock,
    /// The `urls` file of a category directory: `host/path` per line.
    Urls,
}

/// Parses `bytes` line by line and hands every usable entry to `sink`.
pub(crate) fn parse_lines(
    bytes: &[u8],
    format: LineFormat,
    mut sink: impl FnMut(FeedEntry<'_>),
) -> FeedStats {
    let mut stats = FeedStats::default();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > MAX_LINE_LEN {
            stats.skip(
                line_number,
                format!("line longer than {MAX_LINE_LEN} bytes"),
            );
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            stats.skip(line_number, "line is not valid UTF-8");
            continue;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }

        let outcome = match format {
            LineFormat::Hosts => hosts_line(line, &mut sink),
            LineFormat::Domains => domains_line(line, &mut sink),
            LineFormat::Adblock => adblock_line(line, &mut sink),
            LineFormat::Urls => urls_line(line, &mut sink),
        };
        match outcome {
            Line::Entries(count) => stats.entries += count,
            Line::Comment => {}
            Line::Skip(reason) => stats.skip(line_number, reason),
        }
    }
    stats
}

enum Line {
    Entries(usize),
    Comment,
    Skip(String),
}

fn strip_hash_comment(line: &str) -> &str {
    line.split_once('#')
        .map_or(line, |(before, _)| before)
        .trim()
}

/// Names found in the usual preamble of hosts files; they name the machine itself.
const HOSTS_LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

fn hosts_line(line: &str, sink: &mut impl FnMut(FeedEntry<'_>)) -> Line {
    let line = strip_hash_comment(line);
    if line.is_empty() {
        return Line::Comment;
    }
    let mut fields = line.split_whitespace();
    let address = fields.next().unwrap_or_default();
    if address.parse::<IpAddr>().is_err() {
        return Line::Skip(format!("first field {address:?} is not an IP address"));
    }

    let mut count = 0;
    let mut problem = None;
    for name in fields {
        if HOSTS_LOCAL_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
            problem = Some(format!("local name {name:?}"));
            continue;
        }
        match normalize_name(name) {
            Ok(normalized) => {
                sink(FeedEntry::Domain(normalized));
                count += 1;
            }
            Err(error) => problem = Some(format!("invalid name {:?}: {error}", clip(name))),
        }
    }
    match (count, problem) {
        (0, Some(reason)) => Line::Skip(reason),
        (0, None) => Line::Skip("no host name after the address".into()),
        (count, _) => Line::Entries(count),
    }
}

fn domains_line(line: &str, sink: &mut impl FnMut(FeedEntry<'_>)) -> Line {
    let line = strip_hash_comment(line);
    if line.is_empty() {
        return Line::Comment;
    }
    if line.contains(char::is_whitespace) {
        return Line::Skip("more than one field on the line".into());
    }
    host_or_ip(line.strip_prefix("*.").unwrap_or(line), sink)
}

fn host_or_ip(text: &str, sink: &mut impl FnMut(FeedEntry<'_>)) -> Line {
    if let Ok(ip) = text.parse::<IpAddr>() {
        sink(FeedEntry::Ip(ip));
        return Line::Entries(1);
    }
    match normalize_name(text) {
        Ok(normalized) => {
            sink(FeedEntry::Domain(normalized));
            Line::Entries(1)
        }
        Err(error) => Line::Skip(format!("invalid name {:?}: {error}", clip(text))),
    }
}

/// AdBlock options that do not narrow a rule below "every request to this address".
const ADBLOCK_OPTIONS: &[&str] = &["all", "important", "document", "doc", "popup"];

fn adblock_line(line: &str, sink: &mut impl FnMut(FeedEntry<'_>)) -> Line {
    if line.starts_with('!') || line.starts_with('[') || line.starts_with("# ") || line == "#" {
        return Line::Comment;
    }
    if ["##", "#@#", "#?#", "#$#"]
        .iter()
        .any(|marker| line.contains(marker))
    {
        return Line::Skip("cosmetic rule (element hiding) is not supported".into());
    }
    if line.starts_with("@@") {
        return Line::Skip("exception rule (@@) is not supported".into());
    }
    if line.len() > 1 && line.starts_with('/') && line.ends_with('/') {
        return Line::Skip("regular expression rule is not supported".into());
    }

    let (body, options) = match line.rsplit_once('$') {
        Some((body, options)) => (body, Some(options)),
        None => (line, None),
    };
    if let Some(options) = options {
        if let Some(bad) = options
            .split(',')
            .map(str::trim)
            .find(|option| !ADBLOCK_OPTIONS.contains(&option.to_ascii_lowercase().as_str()))
        {
            return Line::Skip(format!("option ${} is not supported", clip(bad)));
        }
    }
    if body.contains('*') {
        return Line::Skip("wildcard rule is not supported".into());
    }

    if let Some(rest) = body.strip_prefix("||") {
        let (rest, separator_end) = match rest.strip_suffix('^') {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        return match rest.find(['/', '?']) {
            None => host_or_ip(rest, sink),
            Some(split) => url_entry(&rest[..split], &rest[split..], separator_end, sink),
        };
    }
    if body.starts_with('|') {
        return Line::Skip("anchored address rule (|) is not supported".into());
    }
    if body.contains(['/', '^', '|', '?']) {
        return Line::Skip("address pattern is not supported".into());
    }
    host_or_ip(body, sink)
}

fn urls_line(line: &str, sink: &mut impl FnMut(FeedEntry<'_>)) -> Line {
    let line = strip_hash_comment(line);
    if line.is_empty() {
        return Line::Comment;
    }
    match parse_url_prefix(line) {
        Ok(prefix) => {
            sink(FeedEntry::Url(prefix));
            Line::Entries(1)
        }
        Err(reason) => Line::Skip(reason),
    }
}

fn url_entry(
    host: &str,
    path: &str,
    separator_end: bool,
    sink: &mut impl FnMut(FeedEntry<'_>),
) -> Line {
    match url_host(host) {
        Ok(host) => {
            sink(FeedEntry::Url(UrlPrefix {
                host,
                path: normalize_path(path),
                separator_end,
            }));
            Line::Entries(1)
        }
        Err(reason) => Line::Skip(reason),
    }
}

fn url_host(host: &str) -> Result<String, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    normalize_name(host)
        .map(Cow::into_owned)
        .map_err(|error| format!("invalid host {:?}: {error}", clip(host)))
}

fn normalize_path(path: &str) -> String {
    crate::request_target::canonical_target(path)
}

/// Parses a URL-prefix entry: `host/path`, optionally with an `http://` or `https://`
/// scheme, which is ignored. An entry without a path covers every path of the host.
pub(crate) fn parse_url_prefix(text: &str) -> Result<UrlPrefix, String> {
    let lower_scheme = text
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower_scheme.starts_with("https://") {
        &text[8..]
    } else if lower_scheme.starts_with("http://") {
        &text[7..]
    } else {
        text
    };
    if rest.contains(char::is_whitespace) {
        return Err("a URL entry must not contain spaces".into());
    }
    let (host, path) = match rest.find(['/', '?']) {
        Some(split) => (&rest[..split], &rest[split..]),
        None => (rest, "/"),
    };
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "a URL entry must not name a port ({:?})",
            clip(host)
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(UrlPrefix {
        host: url_host(host)?,
        path: normalize_path(path),
        separator_end: false,
    })
}

fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &[u8], format: LineFormat) -> (Vec<String>, FeedStats) {
        let mut out = Vec::new();
        let stats = parse_lines(text, format, |entry| {
            out.push(match entry {
                FeedEntry::Domain(name) => format!("domain {name}"),
                FeedEntry::Ip(ip) => format!("ip {ip}"),
                FeedEntry::Url(url) => {
                    format!("url {}{} {}", url.host, url.path, url.separator_end)
                }
            })
        });
        (out, stats)
    }

    #[test]
    fn hosts_file_lines() {
        let text = b"# comment\n127.0.0.1 localhost\n0.0.0.0 Ads.Example.com tracker.example.net # two\n::1 ip6-localhost\nnot-an-ip host.example\n";
        let (entries, stats) = collect(text, LineFormat::Hosts);
        assert_eq!(
            entries,
            vec!["domain ads.example.com", "domain tracker.example.net"]
        );
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.skipped, 3);
        assert_eq!(stats.skipped_examples[0].line, 2);
    }

    #[test]
    fn domain_list_lines() {
        let text = b"# c\nexample.com\n*.wild.example\n192.0.2.7\ntwo fields\nbad..name\n";
        let (entries, stats) = collect(text, LineFormat::Domains);
        assert_eq!(
            entries,
            vec!["domain example.com", "domain wild.example", "ip 192.0.2.7"]
        );
        assert_eq!(stats.skipped, 2);
    }

    #[test]
    fn adblock_lines() {
        let text = b"! comment\n[Adblock Plus 2.0]\n||host.example^\n||Host.Example/Path/File.exe^$all\n||docs.example/uc?id=1^$all\nbare.example\n198.51.100.4\n@@||ok.example^\n||x.example^$script\nexample.com##.ad\n||*.example^\n/regex/\n";
        let (entries, stats) = collect(text, LineFormat::Adblock);
        assert_eq!(
            entries,
            vec![
                "domain host.example",
                "url host.example/path/file.exe true",
                "url docs.example/uc?id=1 true",
                "domain bare.example",
                "ip 198.51.100.4",
            ]
        );
        assert_eq!(stats.skipped, 5);
        let reasons: Vec<_> = stats
            .skipped_examples
            .iter()
            .map(|s| s.reason.as_str())
            .collect();
        assert!(reasons[0].contains("exception rule"), "{reasons:?}");
        assert!(reasons[1].contains("$script"), "{reasons:?}");
    }

    #[test]
    fn junk_and_long_lines_are_counted() {
        let mut text = vec![0xff, 0xfe, 0x00, b'\n'];
        text.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN + 1));
        text.extend_from_slice(b"\nok.example\n");
        let (entries, stats) = collect(&text, LineFormat::Domains);
        assert_eq!(entries, vec!["domain ok.example"]);
        assert_eq!(stats.skipped, 2);
    }

    #[test]
    fn url_prefixes_parse() {
        let prefix = parse_url_prefix("https://Example.com/Downloads/").unwrap();
        assert_eq!(prefix.host, "example.com");
        assert_eq!(prefix.path, "/downloads/");
        assert_eq!(parse_url_prefix("example.com").unwrap().path, "/");
        assert!(parse_url_prefix("example.com:8080/x").is_err());
    }
}
