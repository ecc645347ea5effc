//! Message catalogues and choosing one from `Accept-Language`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use minijinja::value::{Serde, Value};

use crate::error::PagesError;

/// Built-in catalogues as (language tag, TOML source). English is the reference: every other
/// catalogue must have exactly its keys.
const BUILT_IN: [(&str, &str); 2] = [
    ("en", include_str!("../lang/en.toml")),
    ("de", include_str!("../lang/de.toml")),
];

/// The messages of one language.
#[derive(Debug)]
pub(crate) struct Catalogue {
    /// Language tag as written in the file name, e.g. `de` or `pt-BR`; goes into `lang`.
    pub(crate) tag: String,
    messages: BTreeMap<String, String>,
    /// `messages` as a template value, built once.
    pub(crate) value: Value,
}

impl Catalogue {
    /// Returns the message for `key`, or the key itself if it is missing; loading guarantees
    /// that every key of the English catalogue is present.
    pub(crate) fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.messages.get(key).map_or(key, String::as_str)
    }
}

/// All loaded catalogues, keyed by lower-case language tag.
#[derive(Debug)]
pub(crate) struct Catalogues {
    english: Arc<Catalogue>,
    by_tag: BTreeMap<String, Arc<Catalogue>>,
}

impl Catalogues {
    /// Loads the built-in catalogues, then `<template_dir>/lang/*.toml`, which add languages or
    /// replace built-in ones.
    pub(crate) fn load(template_dir: Option<&Path>) -> Result<Self, PagesError> {
        let (_, english_source) = BUILT_IN[0];
        let english = parse_catalogue("en", english_source, "lang/en.toml", None)?;
        let reference: Vec<String> = english.messages.keys().cloned().collect();

        let mut by_tag = BTreeMap::new();
        for (tag, source) in BUILT_IN {
            let catalogue =
                parse_catalogue(tag, source, &format!("lang/{tag}.toml"), Some(&reference))?;
            by_tag.insert(tag.to_owned(), Arc::new(catalogue));
        }
        if let Some(dir) = template_dir {
            for (tag, path) in operator_catalogue_files(&dir.join("lang"))? {
                let source =
                    std::fs::read_to_string(&path).map_err(|source| PagesError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                let catalogue =
                    parse_catalogue(&tag, &source, &path.display().to_string(), Some(&reference))?;
                by_tag.insert(tag.to_ascii_lowercase(), Arc::new(catalogue));
            }
        }

        let english = by_tag
            .get("en")
            .cloned()
            .unwrap_or_else(|| Arc::new(english));
        Ok(Catalogues { english, by_tag })
    }

    /// Picks the catalogue for an `Accept-Language` header: the first language range by
    /// quality that names a loaded tag exactly or by its primary subtag; English otherwise.
    pub(crate) fn select(&self, accept_language: Option<&str>) -> &Arc<Catalogue> {
        let Some(header) = accept_language else {
            return &self.english;
        };
        for range in preferred_languages(header) {
            if let Some(catalogue) = self.by_tag.get(&range) {
                return catalogue;
            }
            let primary = range.split('-').next().unwrap_or_default();
            if let Some(catalogue) = self.by_tag.get(primary) {
                return catalogue;
            }
        }
        &self.english
    }

    /// Returns every loaded catalogue, for trial renders at start.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Catalogue>> {
        self.by_tag.values()
    }
}

/// Lists `dir/*.toml` as (tag, path); a missing folder means no operator catalogues.
fn operator_catalogue_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, PagesError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PagesError::ReadFile {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| PagesError::ReadFile {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let tag = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if !is_language_tag(&tag) {
            return Err(PagesError::Catalogue {
                file: path.display().to_string(),
                line: None,
                message: "the file name must be a language tag such as `fr.toml` or `pt-BR.toml`"
                    .to_owned(),
            });
        }
        files.push((tag, path));
    }
    files.sort();
    Ok(files)
}

/// A primary subtag of 2 or 3 letters, then optional subtags of 1 to 8 letters or digits.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    primary_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Parses one catalogue: a flat TOML table of non-empty strings, with exactly the keys of
/// `reference` when given.
fn parse_catalogue(
    tag: &str,
    source: &str,
    file: &str,
    reference: Option<&[String]>,
) -> Result<Catalogue, PagesError> {
    let error = |line: Option<usize>, message: String| PagesError::Catalogue {
        file: file.to_owned(),
        line,
        message,
    };
    let table: BTreeMap<String, toml::Spanned<String>> = toml::from_str(source).map_err(|e| {
        error(
            e.span().map(|span| line_of(source, span.start)),
            e.message().to_owned(),
        )
    })?;

    for (key, value) in &table {
        if value.get_ref().trim().is_empty() {
            return Err(error(
                Some(line_of(source, value.span().start)),
                format!("`{key}` is empty"),
            ));
        }
    }
    if let Some(reference) = reference {
        if let Some(missing) = reference.iter().find(|key| !table.contains_key(*key)) {
            return Err(error(
                None,
                format!("`{missing}` is missing (every key of the English catalogue is required)"),
            ));
        }
        if let Some((unknown, value)) = table.iter().find(|(key, _)| !reference.contains(key)) {
            return Err(error(
                Some(line_of(source, value.span().start)),
                format!("`{unknown}` is not a key of the English catalogue"),
            ));
        }
    }

    let messages: BTreeMap<String, String> = table
        .into_iter()
        .map(|(k, v)| (k, v.into_inner()))
        .collect();
    let value = Value::from(Serde(&messages));
    Ok(Catalogue {
        tag: tag.to_owned(),
        messages,
        value,
    })
}

/// Returns the 1-based line of byte `offset` in `source`.
pub(crate) fn line_of(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset.min(source.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses `Accept-Language` (RFC 9110 section 12.5.4) into lower-case language ranges, best
/// first. Ranges with q=0 or an invalid q-value are dropped; equal q-values keep header order.
pub(crate) fn preferred_languages(header: &str) -> Vec<String> {
    let mut ranges: Vec<(String, u16)> = Vec::new();
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        if range.is_empty() || range.len() > 35 {
            continue;
        }
        let mut quality = Some(1000);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                quality = parse_qvalue(value.trim());
            }
        }
        if let Some(q) = quality.filter(|&q| q > 0) {
            ranges.push((range, q));
        }
    }
    ranges.sort_by_key(|range| std::cmp::Reverse(range.1));
    ranges.into_iter().map(|(range, _)| range).collect()
}

/// Parses a qvalue (`0`, `0.5`, `1.000`) into thousandths; `None` if malformed.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction_value: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(fraction_value),
        "1" if fraction_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_languages_orders_by_quality() {
        assert_eq!(
            preferred_languages("fr;q=0.5, de-CH, en;q=0.9, *;q=0.1"),
            ["de-ch", "en", "fr", "*"]
        );
    }

    #[test]
    fn preferred_languages_drops_zero_and_invalid_quality() {
        assert_eq!(
            preferred_languages("de;q=0, fr;q=2, it;q=0.abc, es;q=0.001, nl;q=1.0"),
            ["nl", "es"]
        );
    }

    #[test]
    fn select_matches_primary_subtag() {
        let catalogues = Catalogues::load(None).unwrap();
        assert_eq!(catalogues.select(Some("de-AT,de;q=0.9,en;q=0.8")).tag, "de");
        assert_eq!(
            catalogues.select(Some("fr-FR, de;q=0.7, en;q=0.8")).tag,
            "en"
        );
        assert_eq!(catalogues.select(Some("fr-FR, de;q=0.7")).tag, "de");
        assert_eq!(catalogues.select(Some("de;q=0, en")).tag, "en");
    }

    #[test]
    fn select_falls_back_to_english() {
        let catalogues = Catalogues::load(None).unwrap();
        assert_eq!(catalogues.select(None).tag, "en");
        assert_eq!(catalogues.select(Some("")).tag, "en");
        assert_eq!(catalogues.select(Some("ja, zh;q=0.9")).tag, "en");
        assert_eq!(catalogues.select(Some(";;;,,,q=")).tag, "en");
    }

    #[test]
    fn built_in_catalogues_have_the_same_keys() {
        let en: BTreeMap<String, String> = toml::from_str(BUILT_IN[0].1).unwrap();
        let de: BTreeMap<String, String> = toml::from_str(BUILT_IN[1].1).unwrap();
        let en_keys: Vec<&String> = en.keys().collect();
        let de_keys: Vec<&String> = de.keys().collect();
        assert_eq!(en_keys, de_keys);
        for (key, text) in &de {
            assert_ne!(text, &en[key], "`{key}` is not translated");
        }
    }

    #[test]
    fn catalogue_with_missing_key_is_rejected() {
        let err = parse_catalogue(
            "fr",
            "block_title = \"Bloqué\"\n",
            "fr.toml",
            Some(&["block_title".into(), "warn_title".into()]),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "message catalogue fr.toml: `warn_title` is missing (every key of the English catalogue is required)");
    }

    #[test]
    fn catalogue_with_unknown_key_names_its_line() {
        let source = "block_title = \"Bloqué\"\n\nblok_title = \"x\"\n";
        let err =
            parse_catalogue("fr", source, "fr.toml", Some(&["block_title".into()])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message catalogue fr.toml:3: `blok_title` is not a key of the English catalogue"
        );
    }

    #[test]
    fn catalogue_with_syntax_error_names_its_line() {
        let source = "block_title = \"ok\"\nwarn_title = \"unterminated\n";
        let err = parse_catalogue("fr", source, "fr.toml", None).unwrap_err();
        assert!(
            err.to_string().starts_with("message catalogue fr.toml:2: "),
            "{err}"
        );
    }
}
