//! A second opinion for close languages: character n-gram Naive Bayes.
//!
//! lid.176 is unsure or wrong between close languages (gl/pt/es, oc/ca,
//! nn/no/da, sh/hr/sr/sl, sk/cs), and unsure, though usually right, on some
//! others (ga, cy, mt, eu). [`Refined`] asks a Naive Bayes model over
//! character 1-4-grams for a second opinion: when fastText's top label falls
//! in a close group, the model chooses within the group; when fastText is
//! below the confidence threshold, it chooses among fastText's top three.
//! `forja train-lid-groups` trains it from labelled text; the model is a
//! small file (`models/lid-groups.bin`). Its posterior decides the answer
//! and meets the line threshold as it always did, while the score reported
//! is calibrated ([`Calibration`], fitted on held-out text): Naive Bayes
//! alone scores its wrong answers near 1.
//!
//! File format (little-endian): `FJLG` magic, u32 version (2; 1 is read
//! too), u32 number of groups, then per group a u32 count and that many
//! language codes; u32 number of languages, then per language: code, f32
//! log-probability of an unseen n-gram, u32 entries, and entries of (u32
//! n-gram hash, f32 log-prob), sorted by hash; version 2 ends with the
//! [`Calibration`] (f32 k, f32 beta). Strings are u16 length + UTF-8.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

use crate::hash::PassThroughState;

use super::bytes::{load_model, Bytes, ModelError};
use super::Identify;

const MAGIC: &[u8; 4] = b"FJLG";

/// The most (n-gram, language) cells a model file may ask the scoring
/// table for: 512 MB of f32; the bundled model needs under 8 M.
const MAX_TABLE: usize = 1 << 27;

/// The close groups: languages lid.176 confuses with each other.
pub const GROUPS: [&[&str]; 4] = [
    &["es", "gl", "pt", "ca", "oc", "fr", "it"],
    &["no", "nn", "da", "sv"],
    &["hr", "sr", "sh", "sl"],
    &["cs", "sk"],
];

/// Hashes of the character 1-4-grams of a text, lower-cased, words padded
/// with a space on each side (for n = 1 to 4, every window of n characters;
/// this order is kept: scores are sums in it).
fn ngrams(text: &str, mut f: impl FnMut(u32)) {
    let lower = text.to_lowercase();
    // One padded word's bytes, and where each of its characters starts;
    // reused from word to word.
    let mut padded: Vec<u8> = Vec::new();
    let mut bounds: Vec<usize> = Vec::new();
    for word in lower
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
    {
        padded.clear();
        bounds.clear();
        padded.push(b' ');
        bounds.extend(std::iter::once(0).chain(word.char_indices().map(|(i, _)| i + 1)));
        padded.extend_from_slice(word.as_bytes());
        bounds.push(padded.len());
        padded.push(b' ');
        bounds.push(padded.len());
        let chars = bounds.len() - 1;
        for n in 1..=4.min(chars) {
            for k in 0..=chars - n {
                f(xxh3_64(&padded[bounds[k]..bounds[k + n]]) as u32);
            }
        }
    }
}

#[derive(Clone)]
struct LangModel {
    code: String,
    unseen: f32,
    /// Keys are n-gram hashes already: a pass-through hasher (it mixes
    /// a `u32`'s bytes once) instead of SipHash.
    logp: HashMap<u32, f32, PassThroughState>,
}

/// The profiles side by side for scoring: one lookup per n-gram gives its
/// log-probability in every language (a language without the n-gram has
/// its unseen value there), instead of one lookup per candidate language.
#[derive(Clone, Default)]
struct Dense {
    /// N-gram hash to its row.
    index: HashMap<u32, u32, PassThroughState>,
    /// One row of `width` log-probabilities per n-gram, a column per language.
    rows: Vec<f32>,
    width: usize,
}

impl Dense {
    fn new(langs: &[LangModel]) -> Self {
        let width = langs.len();
        let mut d = Dense {
            width,
            ..Dense::default()
        };
        for (col, m) in langs.iter().enumerate() {
            let mut entries: Vec<(&u32, &f32)> = m.logp.iter().collect();
            entries.sort_unstable_by_key(|e| *e.0);
            for (&h, &p) in entries {
                let next = d.index.len() as u32;
                let row = *d.index.entry(h).or_insert_with(|| {
                    d.rows.extend(langs.iter().map(|m| m.unseen));
                    next
                }) as usize;
                d.rows[row * width + col] = p;
            }
        }
        d
    }

    /// The n-gram's log-probabilities, one per language, if any language has it.
    #[inline]
    fn row(&self, h: u32) -> Option<&[f32]> {
        let r = *self.index.get(&h)? as usize;
        Some(&self.rows[r * self.width..(r + 1) * self.width])
    }
}

/// The close-group model: character n-gram profiles that tell apart
/// languages a first identifier confuses (bs/hr/sr, no/nn/da, gl/pt, ...).
#[derive(Clone)]
pub struct GroupModel {
    groups: Vec<Vec<String>>,
    langs: Vec<LangModel>,
    dense: Dense,
    calibration: Calibration,
}

/// How a decision's summed log-likelihoods become a probability worth
/// reporting. Naive Bayes multiplies n-grams as if independent, so its own
/// posterior is near 1 even when it is wrong; the reported one is
/// `softmax(k * score / seen^beta)` over the candidates (`seen`: the text's
/// n-grams), with `k` and `beta` fitted on held-out text by
/// [`GroupModel::fit_calibration`]. It never changes which language wins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Scale of the summed log-likelihoods (a temperature's inverse).
    pub k: f32,
    /// How the scale shrinks with the text's n-grams, from 0 (not at all)
    /// to 1 (a per-n-gram mean).
    pub beta: f32,
}

impl Calibration {
    /// The posterior as Naive Bayes computes it (models without a fit).
    pub const NONE: Calibration = Calibration { k: 1.0, beta: 0.0 };
}

/// A second opinion: the language, Naive Bayes' own posterior (what the
/// line threshold is compared with, as before calibration existed) and the
/// calibrated probability (what the document's `lang_score` reports).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision<'a> {
    pub lang: &'a str,
    pub posterior: f32,
    pub calibrated: f32,
}

/// Mean negative log-probability of the truth over `cases`.
fn log_loss(cases: &[(Vec<f64>, usize, usize)], c: Calibration) -> Option<f64> {
    if cases.is_empty() {
        return None;
    }
    let sum: f64 = cases
        .iter()
        .map(|(s, t, seen)| -softmax_at(s, *t, *seen, c).max(1e-12).ln())
        .sum();
    Some(sum / cases.len() as f64)
}

/// The probability of `scores[i]` under softmax(k * s / seen^beta).
fn softmax_at(scores: &[f64], i: usize, seen: usize, c: Calibration) -> f64 {
    let t = c.k as f64 / (seen as f64).powf(c.beta as f64);
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = scores.iter().map(|s| ((s - max) * t).exp()).sum();
    ((scores[i] - max) * t).exp() / z
}

impl GroupModel {
    /// Trains on (language, text) pairs; keeps the `keep` most frequent
    /// n-grams per language.
    pub fn train<'a>(samples: impl Iterator<Item = (&'a str, &'a str)>, keep: usize) -> Self {
        let mut counts: HashMap<&str, HashMap<u32, u64>> = HashMap::new();
        for (lang, text) in samples {
            let c = counts.entry(lang).or_default();
            ngrams(text, |h| *c.entry(h).or_default() += 1);
        }
        let mut langs: Vec<LangModel> = counts
            .into_iter()
            .map(|(code, c)| {
                let mut top: Vec<(u32, u64)> = c.into_iter().collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                top.truncate(keep);
                let total: u64 = top.iter().map(|t| t.1).sum();
                let alpha = 0.5f64;
                let denom = total as f64 + alpha * (keep as f64 + 1.0);
                LangModel {
                    code: code.to_string(),
                    unseen: (alpha / denom).ln() as f32,
                    logp: top
                        .into_iter()
                        .map(|(h, n)| (h, ((n as f64 + alpha) / denom).ln() as f32))
                        .collect(),
                }
            })
            .collect();
        langs.sort_by(|a, b| a.code.cmp(&b.code));
        let groups = GROUPS
            .iter()
            .map(|g| {
                g.iter()
                    .filter(|l| langs.iter().any(|m| m.code == **l))
                    .map(|l| l.to_string())
                    .collect()
            })
            .collect();
        GroupModel::with(groups, langs, Calibration::NONE)
    }

    fn with(groups: Vec<Vec<String>>, langs: Vec<LangModel>, calibration: Calibration) -> Self {
        GroupModel {
            dense: Dense::new(&langs),
            groups,
            langs,
            calibration,
        }
    }

    /// The calibration in use.
    pub fn calibration(&self) -> Calibration {
        self.calibration
    }

    /// Sets the calibration (from [`GroupModel::fit_calibration`]).
    pub fn set_calibration(&mut self, c: Calibration) {
        self.calibration = c;
    }

    /// Fits the calibration on held-out (language, text) pairs: for each
    /// text of a group language, this model's scores over its group; `k`
    /// and `beta` from a grid, minimising the mean negative log-probability
    /// of the true language. `None` if no text falls in a group.
    pub fn fit_calibration<'a>(
        &self,
        held: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Option<(Calibration, f64)> {
        let cases = self.calibration_cases(held);
        let mut best: Option<(Calibration, f64)> = None;
        for beta in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
            for step in -48..=16 {
                let c = Calibration {
                    k: 2f32.powf(step as f32 / 4.0),
                    beta,
                };
                let loss = log_loss(&cases, c)?;
                if best.is_none_or(|(_, l)| loss < l) {
                    best = Some((c, loss));
                }
            }
        }
        best
    }

    /// The mean negative log-probability of the true language of held-out
    /// (language, text) pairs under calibration `c` (texts of group
    /// languages only); None if there is none.
    pub fn calibration_loss<'a>(
        &self,
        held: impl Iterator<Item = (&'a str, &'a str)>,
        c: Calibration,
    ) -> Option<f64> {
        log_loss(&self.calibration_cases(held), c)
    }

    /// Each held-out text of a group language as its scores over the
    /// group, the true language's place among them, and its n-grams.
    fn calibration_cases<'a>(
        &self,
        held: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(Vec<f64>, usize, usize)> {
        let mut cases = Vec::new();
        for (lang, text) in held {
            let Some(group) = self.group_of(lang) else {
                continue;
            };
            let cols: Vec<usize> = group
                .iter()
                .filter_map(|l| self.langs.iter().position(|m| &m.code == l))
                .collect();
            let truth = cols.iter().position(|&c| self.langs[c].code == lang);
            if let (Some(truth), Some((scores, seen))) = (truth, self.scores(&cols, text)) {
                cases.push((scores, truth, seen));
            }
        }
        cases
    }

    /// The close group of `lang` (two or more languages the model knows).
    pub fn group_of(&self, lang: &str) -> Option<&[String]> {
        self.groups
            .iter()
            .find(|g| g.len() >= 2 && g.iter().any(|l| l == lang))
            .map(Vec::as_slice)
    }

    /// True if the model has a profile of `lang`.
    pub fn knows(&self, lang: &str) -> bool {
        self.langs.iter().any(|m| m.code == lang)
    }

    /// The languages the model knows.
    pub fn languages(&self) -> Vec<&str> {
        self.langs.iter().map(|l| l.code.as_str()).collect()
    }

    /// The group's best language for `text`, if `lang` belongs to a group
    /// this model knows.
    pub fn decide(&self, lang: &str, text: &str) -> Option<Decision<'_>> {
        let group = self.groups.iter().find(|g| g.iter().any(|l| l == lang))?;
        let group: Vec<&str> = group.iter().map(String::as_str).collect();
        self.decide_among(&group, text).filter(|_| group.len() >= 2)
    }

    /// The best of `candidates` (those this model knows) for `text`.
    pub fn decide_among(&self, candidates: &[&str], text: &str) -> Option<Decision<'_>> {
        let cols: Vec<usize> = candidates
            .iter()
            .filter_map(|l| self.langs.iter().position(|m| m.code == *l))
            .collect();
        let (scores, seen) = self.scores(&cols, text)?;
        let (best, _) = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .expect("one or more models");
        Some(Decision {
            lang: self.langs[cols[best]].code.as_str(),
            posterior: softmax_at(&scores, best, seen, Calibration::NONE) as f32,
            calibrated: softmax_at(&scores, best, seen, self.calibration) as f32,
        })
    }

    /// The summed log-likelihoods of `text` in the languages at `cols`, and
    /// how many n-grams it has; None without models or n-grams.
    fn scores(&self, cols: &[usize], text: &str) -> Option<(Vec<f64>, usize)> {
        if cols.is_empty() {
            return None;
        }
        let mut scores = vec![0f64; cols.len()];
        let mut seen = 0usize;
        ngrams(text, |h| {
            seen += 1;
            match self.dense.row(h) {
                Some(row) => {
                    for (s, &c) in scores.iter_mut().zip(cols) {
                        *s += row[c] as f64;
                    }
                }
                None => {
                    for (s, &c) in scores.iter_mut().zip(cols) {
                        *s += self.langs[c].unseen as f64;
                    }
                }
            }
        });
        (seen > 0).then_some((scores, seen))
    }

    /// Writes the model to `path`.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut out = Vec::new();
        let s = |out: &mut Vec<u8>, v: &str| {
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        };
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&(self.groups.len() as u32).to_le_bytes());
        for g in &self.groups {
            out.extend_from_slice(&(g.len() as u32).to_le_bytes());
            for l in g {
                s(&mut out, l);
            }
        }
        out.extend_from_slice(&(self.langs.len() as u32).to_le_bytes());
        for m in &self.langs {
            s(&mut out, &m.code);
            out.extend_from_slice(&m.unseen.to_le_bytes());
            let mut entries: Vec<(&u32, &f32)> = m.logp.iter().collect();
            entries.sort_by_key(|e| *e.0);
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for (h, p) in entries {
                out.extend_from_slice(&h.to_le_bytes());
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.calibration.k.to_le_bytes());
        out.extend_from_slice(&self.calibration.beta.to_le_bytes());
        crate::files::atomic_write(path, &out)
    }

    /// Reads a model written by [`GroupModel::save`].
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        load_model(path, "forja language-group model", Self::from_bytes)
    }

    /// The compiled-in model.
    pub fn builtin() -> Self {
        Self::from_bytes(super::LID_GROUPS).expect("the bundled group model loads")
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Result<Self, String> {
        let mut r = Bytes::new(b);
        if r.take(4)? != MAGIC {
            return Err("bad magic".into());
        }
        let version = r.u32()?;
        if !(1..=2).contains(&version) {
            return Err("unknown version".into());
        }
        let n_groups = r.u32()? as usize;
        let mut groups = Vec::with_capacity(n_groups.min(64));
        for _ in 0..n_groups {
            let n = r.u32()? as usize;
            groups.push((0..n).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?);
        }
        let n_langs = r.u32()? as usize;
        let mut langs = Vec::with_capacity(n_langs.min(256));
        for _ in 0..n_langs {
            let code = r.string()?;
            let unseen = r.f32()?;
            let n = r.u32()? as usize;
            let mut logp =
                HashMap::with_capacity_and_hasher(n.min(1 << 20), PassThroughState::default());
            for _ in 0..n {
                let h = r.u32()?;
                logp.insert(h, r.f32()?);
            }
            langs.push(LangModel { code, unseen, logp });
        }
        let calibration = if version >= 2 {
            let c = Calibration {
                k: r.f32()?,
                beta: r.f32()?,
            };
            if !(c.k.is_finite() && c.k > 0.0 && (0.0..=1.0).contains(&c.beta)) {
                return Err(format!("bad calibration {c:?}"));
            }
            c
        } else {
            Calibration::NONE
        };
        if !r.at_end() {
            return Err("trailing bytes".into());
        }
        // The scoring table holds a row of every language per n-gram: bound
        // it, or a small file of many languages would ask for gigabytes.
        let entries: usize = langs.iter().map(|m| m.logp.len()).sum();
        if entries.saturating_mul(langs.len()) > MAX_TABLE {
            return Err(format!(
                "{} languages with {entries} n-grams: a scoring table over {MAX_TABLE} entries",
                langs.len()
            ));
        }
        Ok(GroupModel::with(groups, langs, calibration))
    }
}

/// A backend whose answers the group model re-decides for close languages
/// and, when the backend is unsure, among its top three if the model knows
/// the first (every label the backend gives stays reachable).
pub struct Refined<B> {
    pub base: B,
    pub groups: GroupModel,
    /// Below this confidence the backend's top three are re-decided.
    pub confident: f32,
}

/// The second opinion is skipped when the backend is at least this sure
/// of a group language...
///
/// Measured with `scripts/eval-lid`'s sets: 1.5x the speed of asking it
/// always, for one Nynorsk text of 58 (sentences and paragraphs) that the
/// second opinion would have taken from Bokmål.
const SURE: f32 = 0.95;
/// ...and gives no other language of the group this much (none of its top
/// three, in practice).
const RIVAL: f32 = 0.001;

impl<B: Identify> Identify for Refined<B> {
    fn identify(&self, line: &str) -> Option<(&str, f32)> {
        self.identify_scored(line).map(|(l, c, _)| (l, c))
    }

    /// The line threshold sees what it always saw (the second opinion's
    /// own posterior when it decides); the score reported is calibrated.
    fn identify_scored(&self, line: &str) -> Option<(&str, f32, f32)> {
        let cands = self.base.candidates(line, 3);
        let &(lang, conf) = cands.first()?;
        if let Some(group) = self.groups.group_of(lang) {
            // Only when the second opinion could change the answer.
            let rival = cands[1..]
                .iter()
                .any(|(l, p)| *p >= RIVAL && group.iter().any(|g| g == l));
            if conf >= SURE && !rival {
                return Some((lang, conf, conf));
            }
            if let Some(d) = self.groups.decide(lang, line) {
                return Some((d.lang, d.posterior, d.calibrated));
            }
        }
        // Re-deciding among the top three is only fair when the model knows
        // the backend's first choice: otherwise a language it has no profile
        // of (Maltese, say) could never win once the backend is unsure.
        if conf < self.confident && self.groups.knows(lang) {
            let names: Vec<&str> = cands.iter().map(|c| c.0).collect();
            if let Some(d) = self.groups.decide_among(&names, line) {
                return Some((d.lang, d.posterior, d.calibrated));
            }
        }
        Some((lang, conf, conf))
    }
}

/// Writes a summary of a model: its languages and groups.
pub fn describe(m: &GroupModel, mut out: impl Write) -> io::Result<()> {
    for (g, langs) in m.groups.iter().enumerate() {
        writeln!(out, "group {}: {}", g + 1, langs.join(" "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tiny real fragments (UDHR articles 1-2) stand in for training text.
    const GL: &str = "Tódolos seres humanos nacen libres e iguais en dignidade e dereitos e, dotados como están de razón e conciencia, díbense comportar fraternalmente uns cos outros.";
    const PT: &str = "Todos os seres humanos nascem livres e iguais em dignidade e em direitos. Dotados de razão e de consciência, devem agir uns para com os outros em espírito de fraternidade.";
    const ES: &str = "Todos los seres humanos nacen libres e iguales en dignidad y derechos y, dotados como están de razón y conciencia, deben comportarse fraternalmente los unos con los otros.";

    /// A backend that answers the same candidates for every line.
    struct Fixed(Vec<(&'static str, f32)>);

    impl Identify for Fixed {
        fn identify(&self, _: &str) -> Option<(&str, f32)> {
            self.0.first().copied()
        }
        fn candidates(&self, _: &str, k: usize) -> Vec<(&str, f32)> {
            self.0.iter().take(k).copied().collect()
        }
    }

    /// The cascade over a fixed first opinion.
    fn refined(m: &GroupModel, cands: Vec<(&'static str, f32)>, confident: f32) -> Refined<Fixed> {
        Refined {
            base: Fixed(cands),
            groups: m.clone(),
            confident,
        }
    }

    #[test]
    fn a_language_the_model_does_not_know_stays_reachable() {
        let m = GroupModel::train([("gl", GL), ("pt", PT), ("es", ES)].into_iter(), 5000);
        let unsure = |cands| refined(&m, cands, 0.6);
        // Maltese first but unsure, a known language second: still Maltese.
        let r = unsure(vec![("mt", 0.4), ("es", 0.3), ("pt", 0.1)]);
        assert_eq!(r.identify(PT).unwrap().0, "mt");
        // A known language first and unsure: the model may re-decide.
        let r = unsure(vec![("es", 0.4), ("mt", 0.3), ("pt", 0.2)]);
        assert_eq!(r.identify(PT).unwrap().0, "pt");
    }

    #[test]
    fn the_second_opinion_is_asked_only_when_it_could_change_the_answer() {
        let m = GroupModel::train([("gl", GL), ("pt", PT), ("es", ES)].into_iter(), 5000);
        let r = |cands| refined(&m, cands, 0.8);
        // Sure, and no other language of the group in sight: kept.
        let sure = r(vec![("es", 0.99), ("en", 0.005)]);
        assert_eq!(sure.identify(GL).unwrap(), ("es", 0.99));
        // Sure, but Galician among the candidates: the model decides.
        let rival = r(vec![("es", 0.99), ("gl", 0.005)]);
        assert_eq!(rival.identify(GL).unwrap().0, "gl");
        // Not sure: the model decides.
        let unsure = r(vec![("es", 0.9), ("en", 0.05)]);
        assert_eq!(unsure.identify(GL).unwrap().0, "gl");
    }

    #[test]
    fn decides_within_a_group_and_round_trips() {
        let m = GroupModel::train([("gl", GL), ("pt", PT), ("es", ES)].into_iter(), 5000);
        assert_eq!(
            m.decide("es", "dereitos díbense tódolos").unwrap().lang,
            "gl"
        );
        assert_eq!(
            m.decide("gl", "direitos nascem razão espírito")
                .unwrap()
                .lang,
            "pt"
        );
        assert_eq!(
            m.decide("pt", "derechos dignidad deben iguales")
                .unwrap()
                .lang,
            "es"
        );
        assert!(
            m.decide("de", "Würde und Rechte").is_none(),
            "not a group language"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.bin");
        m.save(&p).unwrap();
        let back = GroupModel::load(&p).unwrap();
        assert_eq!(back.languages(), m.languages());
        assert_eq!(
            back.decide("es", "dereitos díbense"),
            m.decide("es", "dereitos díbense")
        );
        assert!(GroupModel::from_bytes(b"nope").is_err());
    }

    #[test]
    fn calibration_lowers_the_reported_score_never_the_answer_and_round_trips() {
        let mut m = GroupModel::train([("gl", GL), ("pt", PT), ("es", ES)].into_iter(), 5000);
        let text = "dereitos díbense tódolos seres";
        let raw = m.decide("es", text).unwrap();
        assert_eq!(raw.posterior, raw.calibrated, "no calibration: one number");
        let (raw_lang, raw_posterior) = (raw.lang.to_string(), raw.posterior);
        let held = [
            ("gl", "os dereitos"),
            ("pt", "os direitos"),
            ("es", "los derechos"),
        ];
        let (c, loss) = m.fit_calibration(held.into_iter()).unwrap();
        let before = m
            .calibration_loss(held.into_iter(), Calibration::NONE)
            .unwrap();
        assert!(
            loss <= before,
            "the fit is at least as good as none: {loss} > {before}"
        );
        m.set_calibration(Calibration { k: 0.05, beta: 0.5 });
        let cal = m.decide("es", text).unwrap();
        assert_eq!(
            (cal.lang, cal.posterior),
            (raw_lang.as_str(), raw_posterior)
        );
        assert!(cal.calibrated < raw_posterior && cal.calibrated > 1.0 / 3.0);
        // Version 2 keeps the calibration; version 1 files read as uncalibrated.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.bin");
        m.set_calibration(c);
        m.save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(GroupModel::from_bytes(&bytes).unwrap().calibration(), c);
        let mut v1 = bytes[..bytes.len() - 8].to_vec();
        v1[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            GroupModel::from_bytes(&v1).unwrap().calibration(),
            Calibration::NONE
        );
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 8..n - 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(
            GroupModel::from_bytes(&bad).is_err(),
            "a NaN scale is refused"
        );
    }

    #[test]
    fn a_file_of_many_languages_cannot_ask_for_a_huge_table() {
        // 3,000 languages, one of them with 50,000 n-grams: 600 KB of file,
        // 150 M table cells.
        let mut b = MAGIC.to_vec();
        for v in [2u32, 0, 3000] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for i in 0..3000u32 {
            let code = format!("l{i}");
            b.extend_from_slice(&(code.len() as u16).to_le_bytes());
            b.extend_from_slice(code.as_bytes());
            b.extend_from_slice(&(-9f32).to_le_bytes());
            let n = if i == 0 { 50_000u32 } else { 0 };
            b.extend_from_slice(&n.to_le_bytes());
            for h in 0..n {
                b.extend_from_slice(&h.to_le_bytes());
                b.extend_from_slice(&(-3f32).to_le_bytes());
            }
        }
        b.extend_from_slice(&1f32.to_le_bytes());
        b.extend_from_slice(&0f32.to_le_bytes());
        let e = GroupModel::from_bytes(&b).err().expect("refused");
        assert!(e.contains("scoring table"), "{e}");
    }

    #[test]
    fn the_cascade_thresholds_on_the_posterior_and_reports_the_calibrated_score() {
        let mut m = GroupModel::train([("gl", GL), ("pt", PT), ("es", ES)].into_iter(), 5000);
        m.set_calibration(Calibration { k: 0.05, beta: 0.5 });
        let r = refined(&m, vec![("es", 0.9), ("en", 0.05)], 0.8);
        let (lang, gate, score) = r.identify_scored(GL).unwrap();
        assert_eq!(lang, "gl");
        assert_eq!(r.identify(GL).unwrap(), (lang, gate));
        assert!(
            score < gate,
            "calibrated {score} below the posterior {gate}"
        );
        // Kept without a second opinion: one number.
        let sure = refined(&m, vec![("es", 0.99), ("en", 0.005)], 0.8);
        assert_eq!(sure.identify_scored(GL).unwrap(), ("es", 0.99, 0.99));
    }
}
