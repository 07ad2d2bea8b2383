//! `url_filter`: looks each document's URL up in blocklists by category, in
//! the UT1 format (Université Toulouse Capitole's lists, which OSCAR's
//! ungoliant annotates with): a folder with one sub-folder per category
//! (`adult`, `phishing`, `malware`, ...), each holding a `domains` file (one
//! host per line; it also covers every sub-domain) and/or a `urls` file
//! (`host/path` per line, no scheme; it covers that path and below).
//!
//! Every category a URL is listed in goes into `url_category`
//! (comma-separated, sorted); in filter mode a document in one of `drop`
//! is dropped. Matching is a lookup per parent domain of the host and
//! per `/` boundary of the path, so it costs the same for 50 rules or 5
//! million. Entries are kept as sorted 64-bit hashes with a 16-bit
//! category-set id, 10 bytes each: the UT1 adult list (4.6 million
//! entries) takes about 55 MB and loads in under a second.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{BuildContext, Drop, Mode, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::ledger::Reason;

/// UT1's `adult`, the category OSCAR's annotation is used to remove and
/// the one list datatrove's URL filter ships, plus the categories of sites
/// that attack their visitors (`phishing`, `malware`, `cryptojacking`),
/// whose text is spam at best.
pub const DEFAULT_DROP: [&str; 4] = ["adult", "phishing", "malware", "cryptojacking"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlFilterConfig {
    #[serde(default)]
    pub mode: Mode,
    /// The UT1 folder (relative to the manifest's folder).
    /// `scripts/fetch-ut1` writes `filters/urls/`.
    pub lists: String,
    /// Categories whose documents are dropped in filter mode.
    #[serde(default = "default_drop")]
    pub drop: Vec<String>,
    /// Load only these categories (default: every sub-folder).
    #[serde(default)]
    pub categories: Option<Vec<String>>,
}

fn default_drop() -> Vec<String> {
    DEFAULT_DROP.iter().map(|s| s.to_string()).collect()
}

impl UrlFilterConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut p = Vec::new();
        if self.lists.trim().is_empty() {
            p.push((Some("lists"), "`lists` is empty".into()));
        }
        if let Some(c) = &self.categories {
            if c.is_empty() {
                p.push((Some("categories"), "`categories` is empty".into()));
            }
            for d in &self.drop {
                if !c.contains(d) {
                    p.push((
                        Some("drop"),
                        format!("`drop` names {d:?}, which `categories` does not load"),
                    ));
                }
            }
        }
        p
    }
}

/// Category sets are bit masks: UT1 has about 70 categories.
type Mask = u128;

/// Entries (hashes of normalized domains or URLs) and their categories.
#[derive(Debug, Default)]
struct Index {
    /// Sorted, distinct.
    keys: Vec<u64>,
    /// Per key, an index into `sets`.
    set: Vec<u16>,
    /// The distinct category sets.
    sets: Vec<Mask>,
}

impl Index {
    /// Builds from (hash, category) pairs, merging a hash's categories.
    fn build(mut pairs: Vec<(u64, u8)>) -> Index {
        pairs.sort_unstable();
        let mut index = Index::default();
        let mut set_ids: HashMap<Mask, u16> = HashMap::new();
        let mut i = 0;
        while i < pairs.len() {
            let key = pairs[i].0;
            let mut mask: Mask = 0;
            while i < pairs.len() && pairs[i].0 == key {
                mask |= 1 << pairs[i].1;
                i += 1;
            }
            let next = index.sets.len() as u16;
            let id = *set_ids.entry(mask).or_insert_with(|| {
                index.sets.push(mask);
                next
            });
            index.keys.push(key);
            index.set.push(id);
        }
        index
    }

    fn get(&self, key: u64) -> Option<Mask> {
        let i = self.keys.binary_search(&key).ok()?;
        Some(self.sets[self.set[i] as usize])
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Domain and URL blocklists by category.
#[derive(Debug, Default)]
pub struct Blocklists {
    names: Vec<String>,
    domains: Index,
    urls: Index,
    /// The most `/`-separated parts any `urls` entry has, to bound lookups.
    url_depth: usize,
}

impl Blocklists {
    /// Loads `<dir>/<category>/{domains,urls}` for the chosen categories
    /// (all sub-folders when `only` is None), in sorted order.
    pub fn load(dir: &Path, only: Option<&[String]>) -> Result<Blocklists, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            format!(
                "cannot read the UT1 folder {}: {e} (scripts/fetch-ut1 fetches the lists)",
                dir.display()
            )
        })?;
        let mut cats: Vec<(String, PathBuf)> = Vec::new();
        for e in entries {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            if !e.path().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if only.is_none_or(|o| o.contains(&name)) {
                cats.push((name, e.path()));
            }
        }
        cats.sort();
        if let Some(o) = only {
            for want in o {
                if !cats.iter().any(|(n, _)| n == want) {
                    return Err(format!(
                        "category {want:?} has no folder in {}",
                        dir.display()
                    ));
                }
            }
        }
        if cats.is_empty() {
            return Err(format!(
                "{} holds no category folders (UT1 format: <category>/domains, <category>/urls)",
                dir.display()
            ));
        }
        if cats.len() > Mask::BITS as usize {
            return Err(format!(
                "{} holds {} categories; at most {} are supported",
                dir.display(),
                cats.len(),
                Mask::BITS
            ));
        }
        let mut lists = Blocklists::default();
        let mut domains: Vec<(u64, u8)> = Vec::new();
        let mut urls: Vec<(u64, u8)> = Vec::new();
        let mut not_utf8: Option<(PathBuf, u64)> = None;
        let mut skipped = 0u64;
        for (bit, (name, path)) in cats.into_iter().enumerate() {
            let mut found = false;
            for (file, is_url) in [("domains", false), ("urls", true)] {
                let p = path.join(file);
                let f = match std::fs::File::open(&p) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(format!("{}: {e}", p.display())),
                };
                found = true;
                let mut r = std::io::BufReader::with_capacity(1 << 20, f);
                let mut line = Vec::new();
                let mut n = 0u64;
                loop {
                    line.clear();
                    let read = r
                        .read_until(b'\n', &mut line)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    if read == 0 {
                        break;
                    }
                    n += 1;
                    // A URL that is not UTF-8 can match no document's URL.
                    let Ok(entry) = std::str::from_utf8(&line) else {
                        not_utf8.get_or_insert((p.clone(), n));
                        skipped += 1;
                        continue;
                    };
                    let entry = entry.trim().to_ascii_lowercase();
                    if entry.is_empty() || entry.starts_with('#') {
                        continue;
                    }
                    if is_url {
                        let key = strip_www(entry.trim_end_matches('/'));
                        lists.url_depth = lists.url_depth.max(key.split('/').count());
                        urls.push((xxh3_64(key.as_bytes()), bit as u8));
                    } else {
                        let key = strip_www(entry.trim_end_matches('.'));
                        domains.push((xxh3_64(key.as_bytes()), bit as u8));
                    }
                }
            }
            if !found {
                return Err(format!(
                    "{} has neither a `domains` nor a `urls` file",
                    path.display()
                ));
            }
            lists.names.push(name);
        }
        if let Some((p, n)) = not_utf8 {
            tracing::warn!(
                "url_filter: {skipped} entries are not UTF-8 and can match no URL; skipped (first: {}:{n})",
                p.display()
            );
        }
        lists.domains = Index::build(domains);
        lists.urls = Index::build(urls);
        Ok(lists)
    }

    pub fn categories(&self) -> &[String] {
        &self.names
    }

    /// Distinct domain and URL entries.
    pub fn entries(&self) -> usize {
        self.domains.len() + self.urls.len()
    }

    /// The categories `url` is listed in, as a mask, and what matched.
    pub fn lookup(&self, url: &str) -> (Mask, Option<String>) {
        let Some((host, path)) = split_url(url) else {
            return (0, None);
        };
        let host = strip_www(&host);
        let mut mask = 0;
        let mut hit = None;
        // The host, then each parent domain (a.b.example.com, b.example.com,
        // example.com, com): UT1 lists a domain once for all its sub-domains.
        let mut d = host;
        loop {
            if let Some(m) = self.domains.get(xxh3_64(d.as_bytes())) {
                mask |= m;
                hit.get_or_insert_with(|| format!("domain {d}"));
            }
            match d.find('.') {
                Some(i) => d = &d[i + 1..],
                None => break,
            }
        }
        if self.urls.len() > 0 {
            let full = format!("{host}{path}");
            let full = full.trim_end_matches('/');
            let mut ends: Vec<usize> = full
                .match_indices('/')
                .map(|(i, _)| i)
                .take(self.url_depth)
                .collect();
            ends.push(full.len());
            for end in ends {
                if let Some(m) = self.urls.get(xxh3_64(&full.as_bytes()[..end])) {
                    mask |= m;
                    hit.get_or_insert_with(|| format!("url {}", &full[..end]));
                }
            }
        }
        (mask, hit)
    }

    /// The names of the categories in `mask`, comma-separated.
    pub fn names(&self, mask: Mask) -> String {
        let mut out = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if mask & (1 << i) != 0 {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(n);
            }
        }
        out
    }

    fn mask_of(&self, names: &[String]) -> Mask {
        names
            .iter()
            .filter_map(|n| self.names.iter().position(|m| m == n))
            .fold(0, |m, i| m | (1 << i))
    }
}

fn strip_www(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

/// Lower-cased host and the path (query and fragment dropped) of a URL,
/// with or without a scheme.
fn split_url(url: &str) -> Option<(String, &str)> {
    let url = url.trim();
    let rest = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => url,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host.split(':').next()?
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let path = &rest[end..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    Some((host, path))
}

pub struct UrlFilter {
    config: UrlFilterConfig,
    lists: Arc<Blocklists>,
    drop: Mask,
}

impl UrlFilter {
    pub fn new(config: UrlFilterConfig, ctx: &BuildContext) -> Result<Self, StageError> {
        let dir = crate::files::resolve(&ctx.base, &config.lists);
        let lists = Blocklists::load(&dir, config.categories.as_deref()).map_err(|message| {
            StageError::Failed {
                stage: <UrlFilterConfig as StageSpec>::TYPE.into(),
                message,
            }
        })?;
        tracing::info!(
            "url_filter: {} domain and URL entries in {} categories from {}",
            lists.entries(),
            lists.categories().len(),
            dir.display()
        );
        let drop = lists.mask_of(&config.drop);
        Ok(UrlFilter {
            config,
            lists: Arc::new(lists),
            drop,
        })
    }
}

impl Stage for UrlFilter {
    fn name(&self) -> &'static str {
        <UrlFilterConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![Field::new("url_category", DataType::Utf8, true)]
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let url = Core::of(batch).url;
        let mut col = StringBuilder::with_capacity(batch.num_rows(), 0);
        let mut drops = Vec::new();
        for row in 0..batch.num_rows() {
            if url.is_null(row) {
                col.append_null();
                continue;
            }
            let (mask, hit) = self.lists.lookup(url.value(row));
            if mask == 0 {
                col.append_null();
                continue;
            }
            let names = self.lists.names(mask);
            if mask & self.drop != 0 {
                drops.push(Drop {
                    row,
                    reason: Reason::UrlBlocklisted,
                    detail: format!(
                        "{} ({})",
                        self.lists.names(mask & self.drop),
                        hit.unwrap_or_default()
                    ),
                });
            }
            col.append_value(names);
        }
        Ok(StageOutput {
            columns: vec![Arc::new(col.finish()) as ArrayRef],
            drops,
            ..Default::default()
        })
    }
}

impl StageSpec for UrlFilterConfig {
    const TYPE: &'static str = "url_filter";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        UrlFilterConfig::problems(self)
    }

    fn adds(&self) -> Vec<&'static str> {
        vec!["url_category"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        Ok(Box::new(UrlFilter::new(self.clone(), ctx)?))
    }

    fn example() -> Self {
        UrlFilterConfig {
            mode: Mode::Annotate,
            lists: "filters/urls".into(),
            drop: vec!["adult".into(), "phishing".into()],
            categories: Some(vec!["adult".into(), "phishing".into(), "gambling".into()]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(dir: &Path) -> Blocklists {
        let w = |rel: &str, body: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        };
        w(
            "adult/domains",
            "# comment\nbad.example\nWWW.Naughty.test\n",
        );
        w("adult/urls", "host.example/private/area\n");
        w("phishing/domains", "bad.example\nlogin-bank.test\n");
        w("gambling/urls", "casino.test/poker\n");
        Blocklists::load(dir, None).unwrap()
    }

    #[test]
    fn domains_cover_their_subdomains_and_urls_their_subpaths() {
        let dir = tempfile::tempdir().unwrap();
        let l = lists(dir.path());
        assert_eq!(l.categories(), ["adult", "gambling", "phishing"]);
        let cats = |u: &str| l.names(l.lookup(u).0);
        assert_eq!(cats("https://bad.example/x"), "adult,phishing");
        assert_eq!(cats("http://a.b.BAD.example:8080/?q=1"), "adult,phishing");
        assert_eq!(cats("https://user@www.naughty.test"), "adult");
        assert_eq!(cats("naughty.test/page"), "adult");
        // Not a parent domain: a longer name that merely ends the same.
        assert_eq!(cats("https://notbad.example/"), "");
        assert_eq!(cats("https://example/"), "");
        assert_eq!(cats("https://host.example/private/area/x.html"), "adult");
        assert_eq!(cats("https://host.example/private/area?x=1"), "adult");
        assert_eq!(cats("https://host.example/private/areas"), "");
        assert_eq!(cats("https://host.example/private"), "");
        assert_eq!(cats("https://www.casino.test/poker/"), "gambling");
        assert_eq!(cats("mailto:"), "");
        assert_eq!(cats(""), "");
    }

    #[test]
    fn chosen_categories_only_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        lists(dir.path());
        let only = vec!["phishing".to_string()];
        let l = Blocklists::load(dir.path(), Some(&only)).unwrap();
        assert_eq!(l.names(l.lookup("https://naughty.test").0), "");
        assert_eq!(l.names(l.lookup("https://bad.example").0), "phishing");
        let e = Blocklists::load(dir.path(), Some(&["dating".to_string()])).unwrap_err();
        assert!(e.contains("\"dating\""), "{e}");
        let e = Blocklists::load(&dir.path().join("nope"), None).unwrap_err();
        assert!(e.contains("fetch-ut1"), "{e}");
    }
}
