//! Language identification backends.
//!
//! Each backend names languages in its own codes; forja names them as
//! Salamandra does: ISO 639-1, with `sh` for Serbo-Croatian (Latin), `no`
//! for Bokmål and `nn` for Nynorsk. [`salamandra_code`] is the one table
//! that maps backend codes to those names.

mod bytes;
pub use bytes::ModelError;
pub mod eval;
pub mod fasttext;
pub mod groups;
#[cfg(feature = "lingua")]
mod lingua_backend;
#[cfg(feature = "lingua")]
pub use lingua_backend::LinguaLid;

use std::collections::BTreeMap;
use std::path::Path;

/// fastText lid.176 (CC-BY-SA-3.0, see models/NOTICE), compiled in so that
/// the default `lid` stage needs no file.
pub const LID176: &[u8] = include_bytes!("../../models/lid.176.ftz");

/// forja's second-opinion model (`forja train-lid-groups`), compiled in.
pub const LID_GROUPS: &[u8] = include_bytes!("../../models/lid-groups.bin");

/// The 35 languages of Salamandra's corpus.
pub const SALAMANDRA: [&str; 35] = [
    "bg", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "eu", "fi", "fr", "ga", "gl", "hr",
    "hu", "it", "lt", "lv", "mt", "nl", "nn", "no", "oc", "pl", "pt", "ro", "ru", "sh", "sk", "sl",
    "sr", "sv", "uk",
];

/// Backend code (ISO 639-1 as fastText uses it, or ISO 639-3 as whatlang
/// does) to the name forja uses. Codes outside the table pass through.
pub fn salamandra_code(code: &str) -> &str {
    match code {
        // ISO 639-3 (whatlang) to ISO 639-1.
        "bul" => "bg",
        "cat" => "ca",
        "ces" => "cs",
        "cym" => "cy",
        "dan" => "da",
        "deu" => "de",
        "ell" => "el",
        "eng" => "en",
        "spa" => "es",
        "est" => "et",
        "eus" => "eu",
        "fin" => "fi",
        "fra" => "fr",
        "gle" => "ga",
        "glg" => "gl",
        "hrv" => "hr",
        "hun" => "hu",
        "ita" => "it",
        "lit" => "lt",
        "lav" => "lv",
        "mlt" => "mt",
        "nld" => "nl",
        "nno" => "nn",
        "nob" => "no",
        "oci" => "oc",
        "pol" => "pl",
        "por" => "pt",
        "ron" => "ro",
        "rus" => "ru",
        "slk" => "sk",
        "slv" => "sl",
        "srp" => "sr",
        "swe" => "sv",
        "ukr" => "uk",
        "bos" => "sh",
        // lingua: Bokmål.
        "nb" => "no",
        // fastText: Bosnian is written in Latin script: Salamandra's `sh`.
        "bs" => "sh",
        other => other,
    }
}

/// Identifies the language of one line: (code as forja names it, confidence).
pub trait Identify: Send + Sync {
    fn identify(&self, line: &str) -> Option<(&str, f32)>;

    /// The `k` most likely languages, best first (backends with one answer give one).
    fn candidates(&self, line: &str, k: usize) -> Vec<(&str, f32)> {
        let _ = k;
        self.identify(line).into_iter().collect()
    }
}

impl Identify for Box<dyn Identify> {
    fn identify(&self, line: &str) -> Option<(&str, f32)> {
        self.as_ref().identify(line)
    }
    fn candidates(&self, line: &str, k: usize) -> Vec<(&str, f32)> {
        self.as_ref().candidates(line, k)
    }
}

/// The codes the compiled-in lid.176 answers (after forja's mapping to
/// Salamandra's codes), loaded once.
pub fn builtin_codes() -> &'static [String] {
    static CODES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        FastTextLid::builtin()
            .codes()
            .into_iter()
            .map(str::to_string)
            .collect()
    })
}

/// fastText lid.176 (or any supervised fastText model with `__label__xx` labels).
pub struct FastTextLid {
    model: fasttext::FastText,
    /// Label index -> forja code.
    codes: Vec<String>,
}

impl FastTextLid {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Ok(Self::with_model(fasttext::FastText::load(path)?))
    }

    /// The compiled-in lid.176.
    pub fn builtin() -> Self {
        Self::with_model(fasttext::FastText::from_bytes(LID176).expect("the bundled lid.176 loads"))
    }

    /// The codes it can answer, sorted.
    pub fn codes(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.codes.iter().map(String::as_str).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    fn with_model(model: fasttext::FastText) -> Self {
        let codes = model
            .labels()
            .iter()
            .map(|l| salamandra_code(l.strip_prefix("__label__").unwrap_or(l)).to_string())
            .collect();
        FastTextLid { model, codes }
    }
}

impl Identify for FastTextLid {
    fn identify(&self, line: &str) -> Option<(&str, f32)> {
        let (label, p) = *self.model.predict_indices(line, 1).first()?;
        Some((&self.codes[label], p))
    }
    fn candidates(&self, line: &str, k: usize) -> Vec<(&str, f32)> {
        self.model
            .predict_indices(line, k)
            .into_iter()
            .map(|(i, p)| (self.codes[i].as_str(), p))
            .collect()
    }
}

/// whatlang: fast, about 70 languages, but none of gl, mt, oc, eu, ga, cy.
pub struct WhatlangLid;

impl Identify for WhatlangLid {
    fn identify(&self, line: &str) -> Option<(&str, f32)> {
        let info = whatlang::detect(line)?;
        Some((
            salamandra_code(info.lang().code()),
            info.confidence() as f32,
        ))
    }
}

/// A document's language by ungoliant's rule.
#[derive(Debug, Clone, PartialEq)]
pub struct DocLanguage {
    pub lang: String,
    /// Mean confidence of its lines, weighted by bytes.
    pub score: f64,
    /// Its share of the document's bytes.
    pub share: f64,
    /// The top languages and their shares.
    pub top: Vec<(String, f64)>,
}

/// ungoliant's document rule: identify each non-blank line, count the bytes
/// of lines at or above `line_threshold` per language; the language with the
/// most bytes wins (ties: the first code in order).
pub fn document_language(
    backend: &dyn Identify,
    text: &str,
    line_threshold: f64,
    top_n: usize,
) -> Option<DocLanguage> {
    {
        let mut bytes: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        let mut total = 0usize;
        for line in text.split('\n') {
            if line.trim().is_empty() {
                continue;
            }
            total += line.len();
            if let Some((lang, conf)) = backend.identify(line) {
                if conf as f64 >= line_threshold {
                    let e = bytes.entry(lang).or_default();
                    e.0 += line.len();
                    e.1 += conf as f64 * line.len() as f64;
                }
            }
        }
        // Most bytes wins; on a tie, the first code in order (BTreeMap) does.
        let mut ranked: Vec<(&str, usize, f64)> =
            bytes.into_iter().map(|(l, (b, c))| (l, b, c)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let &(lang, b, conf) = ranked.first()?;
        let share = |b: usize| b as f64 / total.max(1) as f64;
        let top = ranked
            .iter()
            .take(top_n)
            .map(|(l, b, _)| (l.to_string(), share(*b)))
            .collect();
        Some(DocLanguage {
            lang: lang.to_string(),
            score: conf / b as f64,
            share: share(b),
            top,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_salamandra_names() {
        assert_eq!(salamandra_code("cat"), "ca");
        assert_eq!(salamandra_code("nob"), "no");
        assert_eq!(salamandra_code("bs"), "sh");
        assert_eq!(salamandra_code("gl"), "gl");
        assert_eq!(salamandra_code("ast"), "ast");
        for code in SALAMANDRA {
            assert_eq!(salamandra_code(code), code, "639-1 codes pass through");
        }
    }

    #[test]
    fn whatlang_names_languages_the_salamandra_way() {
        let (lang, conf) = WhatlangLid
            .identify("Tots els éssers humans neixen lliures i iguals en dignitat i en drets.")
            .unwrap();
        assert_eq!(lang, "ca");
        assert!(conf > 0.5);
    }
}
