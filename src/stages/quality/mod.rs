//! `quality`: the heuristic quality rules of Gopher, C4 and FineWeb.
//!
//! Every signal is a typed column. In filter mode the rule families run as
//! a cascade in the configured order (by default datatrove's FineWeb
//! order: Gopher repetition, Gopher quality, C4, FineWeb) and a document
//! leaves at the first rule it fails, with that rule as the ledger reason.
//! In annotate mode every family runs and nothing is dropped; the first
//! failing rule is still named in `quality_rule`.
//!
//! Thresholds and stop words are data (`filters/quality.toml`,
//! `filters/stopwords/`), compiled in, with per-language overrides; a
//! document's language is its `lang` column when an earlier stage made one.

mod c4;
mod curate;
mod fineweb;
mod gopher;
mod oscar;
mod thresholds;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};

use super::{BuildContext, Drop, Mode, Reads, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::ledger::Reason;
use thresholds::{RuleSet, Thresholds};

/// The compiled-in thresholds.
pub const THRESHOLDS: &str = include_str!("../../../filters/quality.toml");

macro_rules! stop_word_lists {
    ($($code:literal),*) => {
        /// (language, its stop-word list), from `filters/stopwords/`.
        pub const STOP_WORDS: &[(&str, &str)] = &[
            $(($code, include_str!(concat!("../../../filters/stopwords/", $code, ".txt")))),*
        ];
    };
}

stop_word_lists!(
    "bg", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "eu", "fi", "fr", "ga", "gl", "hr",
    "hu", "it", "lt", "lv", "mt", "nl", "nn", "no", "oc", "pl", "pt", "ro", "ru", "sh", "sk", "sl",
    "sr", "sv", "uk"
);

/// A rule family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    GopherRepetition,
    GopherQuality,
    C4,
    Fineweb,
    /// OSCAR / ungoliant annotations (not in the default cascade).
    Oscar,
    /// The CURATE-style score (not in the default cascade).
    Curate,
}

impl Rule {
    fn key(self) -> &'static str {
        match self {
            Rule::GopherRepetition => "gopher_repetition",
            Rule::GopherQuality => "gopher_quality",
            Rule::C4 => "c4",
            Rule::Fineweb => "fineweb",
            Rule::Oscar => "oscar",
            Rule::Curate => "curate",
        }
    }

    fn signals(self) -> &'static [&'static str] {
        match self {
            Rule::GopherRepetition => &gopher::REPETITION_SIGNALS,
            Rule::GopherQuality => &gopher::QUALITY_SIGNALS,
            Rule::C4 => &c4::SIGNALS,
            Rule::Fineweb => &fineweb::SIGNALS,
            Rule::Oscar => &oscar::SIGNALS,
            Rule::Curate => &curate::SIGNALS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    #[serde(default)]
    pub mode: Mode,
    /// Rule families, in cascade order.
    #[serde(default = "default_rules")]
    pub rules: Vec<Rule>,
    /// Language of documents that have no `lang` column value.
    #[serde(default = "default_language")]
    pub language: String,
    /// Languages the prose rules do not apply to: their documents pass with
    /// empty signals. Code, by default (`lid`'s `code_sources`).
    #[serde(default = "default_skip")]
    pub skip_languages: Vec<String>,
    /// Threshold overrides for every language, one table per rule family
    /// (`[stage.gopher_quality]` after the stage's `[[stage]]` header, keys
    /// as in `filters/quality.toml`), laid over the shipped defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gopher_quality: Option<toml::Table>,
    /// See `gopher_quality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gopher_repetition: Option<toml::Table>,
    /// See `gopher_quality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c4: Option<toml::Table>,
    /// See `gopher_quality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fineweb: Option<toml::Table>,
    /// See `gopher_quality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oscar: Option<toml::Table>,
    /// See `gopher_quality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curate: Option<toml::Table>,
    /// Overrides for one language: `[stage.languages.de.gopher_quality]`;
    /// they win over the stage's tables for every language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub languages: BTreeMap<String, toml::Table>,
}

/// Every rule family, for threshold tables.
const ALL_RULES: [Rule; 6] = [
    Rule::GopherRepetition,
    Rule::GopherQuality,
    Rule::C4,
    Rule::Fineweb,
    Rule::Oscar,
    Rule::Curate,
];

fn default_skip() -> Vec<String> {
    vec!["code".into()]
}

fn default_rules() -> Vec<Rule> {
    vec![
        Rule::GopherRepetition,
        Rule::GopherQuality,
        Rule::C4,
        Rule::Fineweb,
    ]
}

fn default_language() -> String {
    "en".into()
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            mode: Mode::Filter,
            rules: default_rules(),
            language: default_language(),
            skip_languages: default_skip(),
            gopher_quality: None,
            gopher_repetition: None,
            c4: None,
            fineweb: None,
            oscar: None,
            curate: None,
            languages: BTreeMap::new(),
        }
    }
}

impl QualityConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut p = Vec::new();
        if self.rules.is_empty() {
            p.push((Some("rules"), "`rules` is empty".to_string()));
        }
        let mut seen = HashSet::new();
        for r in &self.rules {
            if !seen.insert(*r) {
                p.push((Some("rules"), format!("rule `{}` is listed twice", r.key())));
            }
        }
        let th = match self.thresholds() {
            Ok(th) => th,
            Err(e) => {
                p.push((None, e));
                return p;
            }
        };
        for (code, rules) in &self.languages {
            for (rule, v) in rules {
                if !ALL_RULES.iter().any(|r| r.key() == rule) {
                    p.push((
                        Some("languages"),
                        format!(
                            "`languages.{code}.{rule}`: no rule family `{rule}` (one of {})",
                            ALL_RULES.map(Rule::key).join(", ")
                        ),
                    ));
                } else if !v.is_table() {
                    p.push((
                        Some("languages"),
                        format!("`languages.{code}.{rule}` must be a table of thresholds"),
                    ));
                }
            }
        }
        // Every language the stage may meet must build its rules; each
        // problem is told once, at the table that caused it.
        let mut langs: Vec<&str> = STOP_WORDS.iter().map(|(c, _)| *c).collect();
        langs.push(&self.language);
        langs.extend(self.languages.keys().map(String::as_str));
        let overrides = self.overrides();
        let mut told = HashSet::new();
        for lang in langs {
            for (rule, e) in th.check(lang) {
                let own = self.languages.get(lang).is_some_and(|t| t.contains_key(rule));
                let (field, message) = if own {
                    ("languages", format!("thresholds {e}"))
                } else if overrides.contains_key(rule) {
                    // The same for every language: told once, without one.
                    let e = e.split_once(": ").map_or(e.as_str(), |(_, m)| m);
                    (rule, format!("thresholds [{rule}]: {e}"))
                } else {
                    (rule, format!("thresholds {e}"))
                };
                if told.insert((field, rule, own.then(|| lang.to_string()))) {
                    p.push((Some(field), message));
                }
            }
        }
        p
    }

    /// The stage's per-rule tables, by rule family.
    fn overrides(&self) -> toml::Table {
        let mut t = toml::Table::new();
        for (rule, table) in [
            (Rule::GopherQuality, &self.gopher_quality),
            (Rule::GopherRepetition, &self.gopher_repetition),
            (Rule::C4, &self.c4),
            (Rule::Fineweb, &self.fineweb),
            (Rule::Oscar, &self.oscar),
            (Rule::Curate, &self.curate),
        ] {
            if let Some(table) = table {
                t.insert(rule.key().into(), toml::Value::Table(table.clone()));
            }
        }
        t
    }

    /// The shipped thresholds with this stage's overrides.
    fn thresholds(&self) -> Result<Thresholds, String> {
        Ok(Thresholds::parse(THRESHOLDS)?.with_overrides(&self.overrides(), &self.languages))
    }
}

/// What one rule family decided, with its signals in column order.
pub struct Verdict<const N: usize> {
    pub signals: [f64; N],
    pub fail: Option<(Reason, String)>,
}

/// One document after the rules.
struct Judged<'t> {
    /// Every signal column, in order (None: not computed or not a number).
    signals: Vec<Option<f64>>,
    /// The first rule it failed.
    fail: Option<(Reason, String)>,
    /// Its text after C4's line removal and OSCAR's trim.
    text: Cow<'t, str>,
    /// OSCAR's labels, when that rule ran.
    annotations: Option<String>,
}

pub struct Quality {
    config: QualityConfig,
    /// Per language; `None` key: the configured default language.
    rules: HashMap<String, RuleSet>,
    fallback: RuleSet,
}

impl Quality {
    pub fn new(config: QualityConfig) -> Result<Self, StageError> {
        let fail = |message| StageError::Failed {
            stage: <QualityConfig as StageSpec>::TYPE.into(),
            message,
        };
        let th = config.thresholds().map_err(fail)?;
        let mut rules = HashMap::new();
        let langs = STOP_WORDS.iter().map(|(c, _)| *c);
        for code in langs.chain(config.languages.keys().map(String::as_str)) {
            rules.insert(code.to_string(), th.rules_for(code).map_err(fail)?);
        }
        let fallback = th.rules_for(&config.language).map_err(fail)?;
        Ok(Quality {
            config,
            rules,
            fallback,
        })
    }

    /// Runs the configured rules on one text. Returns the signals (in
    /// column order), the first failure, and the text after C4's line removal.
    fn judge<'t>(&self, rules: &RuleSet, text: &'t str) -> Judged<'t> {
        let mut signals = Vec::new();
        let mut fail = None;
        let mut cur: Cow<'t, str> = Cow::Borrowed(text);
        // Word boundaries of `cur` as byte ranges, so C4 can replace `cur`.
        let mut spans: Option<Vec<std::ops::Range<usize>>> = None;
        let word_spans = |t: &str| -> Vec<std::ops::Range<usize>> {
            let base = t.as_ptr() as usize;
            crate::text::spacy::words(t)
                .into_iter()
                .map(|w| {
                    let start = w.as_ptr() as usize - base;
                    start..start + w.len()
                })
                .collect()
        };
        let stop_early = self.config.mode == Mode::Filter;
        let mut annotations = None;
        for rule in &self.config.rules {
            if fail.is_some() && stop_early {
                signals.extend(rule.signals().iter().map(|_| None));
                continue;
            }
            let (sig, f): (Vec<f64>, Option<(Reason, String)>) = match rule {
                Rule::GopherRepetition | Rule::GopherQuality => {
                    let sp = spans.get_or_insert_with(|| word_spans(&cur));
                    let words: Vec<&str> = sp.iter().map(|r| &cur[r.clone()]).collect();
                    if *rule == Rule::GopherRepetition {
                        let v = rules.repetition.check(&cur, &words);
                        (v.signals.to_vec(), v.fail)
                    } else {
                        let v = rules.quality.check(&cur, &words);
                        (v.signals.to_vec(), v.fail)
                    }
                }
                Rule::C4 => {
                    let o = rules.c4.check(&cur);
                    if let Some(t) = o.text {
                        spans = None;
                        cur = Cow::Owned(t);
                    }
                    (o.signals.to_vec(), o.fail)
                }
                Rule::Fineweb => {
                    let n = spans.get_or_insert_with(|| word_spans(&cur)).len();
                    let v = rules.fineweb.check(&cur, n);
                    (v.signals.to_vec(), v.fail)
                }
                Rule::Oscar => {
                    let o = rules.oscar.check(&cur);
                    annotations = Some(o.annotations.join(","));
                    if let Some(t) = o.text {
                        spans = None;
                        cur = Cow::Owned(t);
                    }
                    (o.signals.to_vec(), o.fail)
                }
                Rule::Curate => {
                    let v = rules.curate.check(&cur);
                    (v.signals.to_vec(), v.fail)
                }
            };
            signals.extend(sig.into_iter().map(|v| v.is_finite().then_some(v)));
            if fail.is_none() {
                fail = f;
            }
        }
        Judged {
            signals,
            fail,
            text: cur,
            annotations,
        }
    }
}

impl Stage for Quality {
    fn name(&self) -> &'static str {
        <QualityConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        let mut f: Vec<Field> = self
            .config
            .rules
            .iter()
            .flat_map(|r| r.signals().iter())
            .map(|name| Field::new(*name, DataType::Float64, true))
            .collect();
        if self.config.rules.contains(&Rule::Oscar) {
            f.push(Field::new("oscar_annotations", DataType::Utf8, true));
        }
        // The first rule the document fails, whether or not it was dropped.
        f.push(Field::new("quality_rule", DataType::Utf8, true));
        f
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let lang: Option<&StringArray> = batch
            .schema()
            .index_of("lang")
            .ok()
            .and_then(|i| batch.column(i).as_any().downcast_ref::<StringArray>());
        let has_oscar = self.config.rules.contains(&Rule::Oscar);
        let n_signals: usize = self.config.rules.iter().map(|r| r.signals().len()).sum();
        let mut oscar_col = StringBuilder::new();
        let mut cols: Vec<Float64Builder> = (0..n_signals)
            .map(|_| Float64Builder::with_capacity(batch.num_rows()))
            .collect();
        let mut rule_col = StringBuilder::new();
        let mut drops = Vec::new();
        let mut new_text: Option<StringBuilder> = None;
        for row in 0..batch.num_rows() {
            let t = text.value(row);
            let skipped = lang
                .filter(|l| l.is_valid(row))
                .is_some_and(|l| self.config.skip_languages.iter().any(|s| s == l.value(row)));
            if skipped {
                if has_oscar {
                    oscar_col.append_null();
                }
                for c in cols.iter_mut() {
                    c.append_null();
                }
                rule_col.append_null();
                if let Some(b) = new_text.as_mut() {
                    b.append_value(t);
                }
                continue;
            }
            let rules = lang
                .filter(|l| l.is_valid(row))
                .and_then(|l| self.rules.get(l.value(row)))
                .unwrap_or(&self.fallback);
            let Judged {
                signals,
                fail,
                text: cur,
                annotations,
            } = self.judge(rules, t);
            if has_oscar {
                oscar_col.append_option(annotations);
            }
            for (c, v) in cols.iter_mut().zip(signals) {
                c.append_option(v);
            }
            rule_col.append_option(fail.as_ref().map(|f| f.0.as_str()));
            if let Some((reason, detail)) = fail {
                drops.push(Drop {
                    row,
                    reason,
                    detail,
                });
            }
            // Filter mode keeps what C4 and OSCAR kept; annotate mode never changes text.
            if self.config.mode == Mode::Filter && cur != t && new_text.is_none() {
                let mut b = StringBuilder::with_capacity(batch.num_rows(), text.value_data().len());
                for r in 0..row {
                    b.append_value(text.value(r));
                }
                new_text = Some(b);
            }
            if let Some(b) = new_text.as_mut() {
                b.append_value(if self.config.mode == Mode::Filter {
                    &cur
                } else {
                    t
                });
            }
        }
        let mut columns: Vec<ArrayRef> = cols
            .into_iter()
            .map(|mut c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        if has_oscar {
            columns.push(Arc::new(oscar_col.finish()));
        }
        columns.push(Arc::new(rule_col.finish()));
        Ok(StageOutput {
            text: new_text.map(|mut b| Arc::new(b.finish()) as ArrayRef),
            columns,
            drops,
            scan: None,
        })
    }
}

impl StageSpec for QualityConfig {
    const TYPE: &'static str = "quality";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        QualityConfig::problems(self)
    }

    fn reads(&self) -> Vec<Reads> {
        vec![Reads::lang(
            Some("language"),
            false,
            format!("every document is taken as `{}`", self.language),
        )]
    }

    fn adds(&self) -> Vec<&'static str> {
        {
            let mut names: Vec<&'static str> = self
                .rules
                .iter()
                .flat_map(|r| r.signals().iter().copied())
                .collect();
            if self.rules.contains(&Rule::Oscar) {
                names.push("oscar_annotations");
            }
            names.push("quality_rule");
            names
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(Quality::new(self.clone())?))
    }

    fn example() -> Self {
        QualityConfig {
            mode: Mode::Annotate,
            rules: vec![Rule::C4, Rule::GopherQuality],
            language: "ca".into(),
            skip_languages: vec!["code".into(), "und".into()],
            gopher_quality: Some(
                toml::from_str("min_alpha_words_ratio = 0.6").expect("a TOML table"),
            ),
            languages: [(
                "de".to_string(),
                toml::from_str("fineweb = { short_line_length = 20 }").expect("a TOML table"),
            )]
            .into(),
            ..QualityConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::CoreBuilder;

    #[test]
    fn bundled_thresholds_parse_for_every_language() {
        let th = Thresholds::parse(THRESHOLDS).unwrap();
        for (code, list) in STOP_WORDS {
            assert!(list.lines().count() > 50, "{code}");
            th.rules_for(code).unwrap();
        }
        assert_eq!(STOP_WORDS.len(), 35);
    }

    #[test]
    fn language_overrides_lay_over_defaults() {
        let text = format!("{THRESHOLDS}\n[lang.ca.fineweb]\nshort_line_length = 10\n");
        let th = Thresholds::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            th.table("ca", "fineweb")["short_line_length"].as_integer(),
            Some(10)
        );
        assert_eq!(
            th.table("es", "fineweb")["short_line_length"].as_integer(),
            Some(30)
        );
    }

    fn batch(texts: &[&str]) -> RecordBatch {
        let mut b = CoreBuilder::with_capacity(texts.len(), 1000);
        for (i, t) in texts.iter().enumerate() {
            b.push("s", "f", i as u64 + 1, t, None, None);
        }
        b.finish()
    }

    const GOOD: &str = "Everyone has duties to the community in which alone the free and full development of his personality is possible. In the exercise of his rights and freedoms, everyone shall be subject only to such limitations as are determined by law. The purpose is securing due recognition and respect for the rights and freedoms of others. It also serves meeting the just requirements of morality, public order and the general welfare. These rights and freedoms may in no case be exercised contrary to the purposes and principles of the United Nations.";

    #[test]
    fn cascade_stops_at_the_first_failing_rule() {
        let q = Quality::new(QualityConfig::default()).unwrap();
        let b = batch(&[GOOD, "Too short to be a document."]);
        let out = q.process(&b).unwrap();
        assert_eq!(out.drops.len(), 1);
        assert_eq!(out.drops[0].row, 1);
        // Repetition runs first: in 27 characters, one 2-gram is already a third.
        assert_eq!(out.drops[0].reason, Reason::GopherTop2Gram);
        assert_eq!(out.columns.len(), q.fields().len());
        // Rules after the failing one were not run on the dropped document.
        let fineweb = out.columns[q.fields().len() - 2]
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap();
        assert!(fineweb.is_valid(0) && fineweb.is_null(1));
    }

    #[test]
    fn code_passes_untouched() {
        let q = Quality::new(QualityConfig::default()).unwrap();
        let code = "fn main() {\n    println!(\"{}\", 1);\n}\n";
        let b = batch(&[code, code]);
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(StringArray::from(vec![Some("code"), Some("en")])));
        let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| (**f).clone()).collect();
        fields.push(Field::new("lang", DataType::Utf8, true));
        let b = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols).unwrap();
        let out = q.process(&b).unwrap();
        // The same text as English prose fails; as code it is not judged.
        assert_eq!(out.drops.len(), 1);
        assert_eq!(out.drops[0].row, 1);
        assert!(out.columns.iter().all(|c| c.is_null(0)));
    }

    #[test]
    fn annotate_mode_runs_every_rule_and_keeps_text() {
        let q = Quality::new(QualityConfig {
            mode: Mode::Annotate,
            ..Default::default()
        })
        .unwrap();
        let page = format!("Home | News\n{GOOD}");
        let out = q.process(&batch(&[&page])).unwrap();
        assert!(out.text.is_none(), "annotate mode never rewrites text");
        let removed = out.columns[12]
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap();
        assert_eq!(removed.value(0), 1.0, "C4 would remove the menu line");
    }

    #[test]
    fn every_rule_family_writes_its_columns() {
        let all = vec![
            Rule::Oscar,
            Rule::GopherRepetition,
            Rule::GopherQuality,
            Rule::C4,
            Rule::Fineweb,
            Rule::Curate,
        ];
        let q = Quality::new(QualityConfig {
            mode: Mode::Annotate,
            rules: all,
            ..Default::default()
        })
        .unwrap();
        let out = q.process(&batch(&[GOOD, "Menu"])).unwrap();
        assert_eq!(out.columns.len(), q.fields().len());
        let names: Vec<String> = q.fields().iter().map(|f| f.name().clone()).collect();
        let at = |n: &str| names.iter().position(|x| x == n).unwrap();
        let oscar = out.columns[at("oscar_annotations")]
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(oscar.value(0), "tiny", "one long line is a tiny document");
        let score = out.columns[at("curate_score")]
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap();
        assert!(score.value(0) > 0.8 && score.value(1) < 0.8);
    }

    #[test]
    fn filter_mode_keeps_what_c4_keeps() {
        let q = Quality::new(QualityConfig::default()).unwrap();
        let page = format!("Home | News\n{GOOD}");
        let out = q.process(&batch(&[&page])).unwrap();
        assert!(out.drops.is_empty(), "{:?}", out.drops);
        let text = out.text.unwrap();
        let text = text.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(text.value(0), GOOD);
    }
}
