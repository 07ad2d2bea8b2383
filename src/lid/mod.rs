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

    /// The language of one line, the confidence the document rule's line
    /// threshold is compared with, and the probability to report as the
    /// score (calibrated where the backend can tell them apart; most give
    /// one number twice).
    fn identify_scored(&self, line: &str) -> Option<(&str, f32, f32)> {
        self.identify(line).map(|(l, c)| (l, c, c))
    }

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
    fn identify_scored(&self, line: &str) -> Option<(&str, f32, f32)> {
        self.as_ref().identify_scored(line)
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
    /// Mean score of its lines, weighted by bytes (the backend's
    /// calibrated probability where it has one: see
    /// [`Identify::identify_scored`]).
    pub score: f64,
    /// Its share of the document's bytes.
    pub share: f64,
    /// The top languages and their shares.
    pub top: Vec<(String, f64)>,
}

/// A line the document rule weighs: at least `min_letters` letters (kana
/// and CJK ideographs count twice), at
/// least as many letters as other visible characters, not mostly capitals
/// (headings, table rows of character names) and not code. Option lists,
/// paths, code, numbers, tables and headings too short to identify say
/// nothing about the document's languages.
pub fn is_prose(line: &str, min_letters: usize) -> bool {
    if min_letters == 0 {
        return true; // every line weighs, as in ungoliant
    }
    if line.len() < min_letters {
        return false; // a letter takes a byte at least
    }
    let (mut letters, mut other, mut upper, mut lower) = (0usize, 0usize, 0usize, 0usize);
    for c in line.chars() {
        if c.is_ascii() {
            // The common case without Unicode table lookups.
            let b = c as u8;
            if b.is_ascii_alphabetic() {
                letters += 1;
                upper += usize::from(b.is_ascii_uppercase());
                lower += usize::from(b.is_ascii_lowercase());
            } else if !b.is_ascii_whitespace() {
                other += 1;
            }
        } else if ('\u{3040}'..='\u{9FFF}').contains(&c) {
            // Kana and CJK ideographs carry about a word each: they count
            // twice, and have no case.
            letters += 2;
            lower += 1;
        } else if matches!(c, '\u{C0}'..='\u{24F}' | '\u{386}'..='\u{3FF}' | '\u{400}'..='\u{481}' | '\u{48A}'..='\u{52F}')
            && c != '×'
            && c != '÷'
            || c.is_alphabetic()
        {
            // Latin, Greek and Cyrillic letters without a table lookup; case
            // is told for ASCII only (tables of names and headings in
            // capitals are ASCII in practice).
            letters += 1;
            lower += 1;
        } else if !c.is_whitespace() {
            other += 1;
        }
    }
    letters >= min_letters && letters >= other && upper <= lower && !code_like(line)
}

/// Code rather than prose: a statement or block end, a call or
/// preprocessor line, a command synopsis (`[ -a | -b ]`), or a snake_case
/// identifier.
fn code_like(line: &str) -> bool {
    let t = line.trim();
    if t.ends_with([';', '{', '}']) || t.starts_with("#include") || t.starts_with("#define") {
        return true;
    }
    // One pass over the bytes for `()`, `->`, `::`, `==`, `&&`, `||`,
    // ` | `, `{ `, `[ ` and an underscore between letters or digits.
    let b = t.as_bytes();
    (1..b.len()).any(|i| {
        let (p, c) = (b[i - 1], b[i]);
        matches!(
            (p, c),
            (b'(', b')') | (b'-', b'>') | (b':', b':') | (b'=', b'=')
        ) || matches!(
            (p, c),
            (b'&', b'&') | (b'|', b'|') | (b'{', b' ') | (b'[', b' ')
        ) || (p == b'|' && c == b' ' && i >= 2 && b[i - 2] == b' ')
            || (p == b'_'
                && i >= 2
                && b[i - 2].is_ascii_alphanumeric()
                && c.is_ascii_alphanumeric())
    })
}

/// Bytes and confidence-weighted bytes of one language's lines.
#[derive(Default, Clone, Copy)]
struct Tally {
    bytes: usize,
    conf: f64,
}

impl Tally {
    fn add(&mut self, bytes: usize, conf: f64) {
        self.bytes += bytes;
        self.conf += conf * bytes as f64;
    }
}

/// ungoliant's document rule, weighed on identified prose: identify each
/// non-blank line, count the bytes of lines at or above `line_threshold`
/// per language; the language with the most bytes wins (ties: the first
/// code in order); its score is the mean confidence of all its identified
/// lines, weighted by bytes. Only prose lines ([`is_prose`] with `min_line_letters`)
/// that were identified count, and shares are of their bytes: a line of
/// options, a table or an unsure line is evidence of no language, so it
/// neither makes a document mixed nor dilutes its language. A document
/// with no identified prose line falls back to ungoliant's own rule: every
/// identified line counts, and shares are of all non-blank bytes.
pub fn document_language(
    backend: &dyn Identify,
    text: &str,
    line_threshold: f64,
    min_line_letters: usize,
    top_n: usize,
) -> Option<DocLanguage> {
    let mut all: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut found: Vec<(&str, &str)> = Vec::new();
    let mut total = 0usize;
    for line in text.split('\n') {
        if line.trim().is_empty() {
            continue;
        }
        total += line.len();
        if let Some((lang, conf, score)) = backend.identify_scored(line) {
            if conf as f64 >= line_threshold {
                all.entry(lang).or_default().add(line.len(), score as f64);
                found.push((lang, line));
            }
        }
    }
    // Prose bytes per language. With one language a single prose line
    // settles its share (all of the prose), so most lines are never tested.
    let mut prose: BTreeMap<&str, usize> = BTreeMap::new();
    if all.len() == 1 {
        if let Some(&(lang, line)) = found.iter().find(|(_, l)| is_prose(l, min_line_letters)) {
            prose.insert(lang, line.len());
        }
    } else {
        for &(lang, line) in &found {
            if is_prose(line, min_line_letters) {
                *prose.entry(lang).or_default() += line.len();
            }
        }
    }
    let (weights, total): (Vec<(&str, usize)>, usize) = if prose.is_empty() {
        (all.iter().map(|(l, t)| (*l, t.bytes)).collect(), total)
    } else {
        let sum = prose.values().sum();
        (prose.into_iter().collect(), sum)
    };
    // Most bytes wins; on a tie, the first code in order (BTreeMap) does.
    let mut ranked = weights;
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let &(lang, b) = ranked.first()?;
    let share = |b: usize| b as f64 / total.max(1) as f64;
    let top = ranked
        .iter()
        .take(top_n)
        .map(|(l, b)| (l.to_string(), share(*b)))
        .collect();
    let t = all[lang];
    Some(DocLanguage {
        lang: lang.to_string(),
        score: t.conf / t.bytes as f64,
        share: share(b),
        top,
    })
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

    /// Catalan for lines with "català" (unsure for "dubte"), English for
    /// every other line.
    struct Fixed;

    impl Identify for Fixed {
        fn identify(&self, line: &str) -> Option<(&str, f32)> {
            Some(if line.contains("dubte") {
                ("ca", 0.3)
            } else if line.contains("català") {
                ("ca", 0.99)
            } else {
                ("en", 0.99)
            })
        }
    }

    const CA_PROSE: &str = "Aquesta pàgina explica en català com es fa servir l'ordre.";

    #[test]
    fn prose_lines_are_told_from_options_code_tables_and_headings() {
        for prose in [
            CA_PROSE,
            "Print newline, word, and byte counts for each file.",
            "将所列档案中的制表符转换为空格，且输出到标准输出。",
        ] {
            assert!(is_prose(prose, 25), "{prose}");
        }
        for not in [
            "-b, --binary",
            "/dev/vcs[0-63]",
            "DESCRIPTION",
            "254 172 AC Ź LETTRE MAJUSCULE LATINE Z ACCENT AIGU",
            "int putc_unlocked(int c, FILE *stream);",
            "kbd_mode [ -a | -u | -k | -s ] [ -f ] [ -C CONSOLE ]",
            "if (fd < 0) { perror(console) }",
            "csoportnév:jelszó:GID:felhasználók_listája",
        ] {
            assert!(!is_prose(not, 25), "{not}");
        }
    }

    #[test]
    fn options_and_code_do_not_make_a_localized_page_mixed() {
        let options = "-v, --verbose\n--version\n/etc/forja/forja.toml\nNAME\n\
             int main(void);\nkbd_mode [ -a | -u ]\nCONFIG_FILE=/etc/forja.toml";
        let page = format!("{CA_PROSE}\n{options}\n{options}\n{CA_PROSE}");
        // ungoliant's rule (every line weighs) calls the Catalan page English.
        let old = document_language(&Fixed, &page, 0.8, 0, 3).unwrap();
        assert_eq!(old.lang, "en");
        let new = document_language(&Fixed, &page, 0.8, 25, 3).unwrap();
        assert_eq!((new.lang.as_str(), new.share), ("ca", 1.0));
    }

    #[test]
    fn untranslated_prose_still_makes_a_page_mixed() {
        let en = "This paragraph was never translated and stays in English here.";
        let page = format!("{CA_PROSE}\n{en}\n-v, --verbose");
        let d = document_language(&Fixed, &page, 0.8, 25, 3).unwrap();
        assert_eq!(d.lang, "en");
        assert!(d.share < 0.6, "{}", d.share);
    }

    #[test]
    fn unsure_lines_and_pages_without_prose() {
        // An unsure line is evidence of no language: it does not dilute.
        let page = format!("{CA_PROSE}\nAquest text dubte molt de la seva llengua, diu.");
        let d = document_language(&Fixed, &page, 0.8, 25, 3).unwrap();
        assert_eq!((d.lang.as_str(), d.share), ("ca", 1.0));
        // No prose line: every identified line counts, over all bytes.
        let short = "català\n-v\n--help";
        let d = document_language(&Fixed, short, 0.8, 25, 3).unwrap();
        assert_eq!(d.lang, "en");
        assert!((d.share - 8.0 / 15.0).abs() < 1e-9, "{}", d.share);
    }
}
