//! The `quality` stage's thresholds: `filters/quality.toml` (compiled in),
//! with the manifest's overrides laid over it.
//!
//! Four layers, later ones winning, per rule family and key: the file's
//! `[default.<rule>]`, the file's `[lang.<code>.<rule>]`, the stage's
//! `[stage.<rule>]` and the stage's `[stage.languages.<code>.<rule>]`.

use std::collections::{BTreeMap, HashSet};


use serde::Deserialize;

use super::gopher::{GopherQualityParams, GopherRepetitionParams};
use super::{c4, curate, fineweb, gopher, oscar, STOP_WORDS};

/// The rules with one language's thresholds.
pub(super) struct RuleSet {
    pub(super) repetition: gopher::GopherRepetition,
    pub(super) quality: gopher::GopherQuality,
    pub(super) c4: c4::C4,
    pub(super) fineweb: fineweb::Fineweb,
    pub(super) oscar: oscar::Oscar,
    pub(super) curate: curate::Curate,
}

/// `filters/quality.toml`, parsed, and the stage's overrides.
pub(super) struct Thresholds {
    default: toml::Table,
    lang: toml::Table,
    /// `[stage.<rule>]`: rule family to its table.
    stage_default: toml::Table,
    /// `[stage.languages.<code>]`: language to its rule tables.
    stage_lang: BTreeMap<String, toml::Table>,
}

impl Thresholds {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let mut t: toml::Table =
            toml::from_str(text).map_err(|e| format!("filters/quality.toml: {e}"))?;
        let mut take = |k: &str| match t.remove(k) {
            Some(toml::Value::Table(t)) => Ok(t),
            None => Ok(toml::Table::new()),
            Some(_) => Err(format!("filters/quality.toml: `{k}` must be a table")),
        };
        let th = Thresholds {
            default: take("default")?,
            lang: take("lang")?,
            stage_default: toml::Table::new(),
            stage_lang: BTreeMap::new(),
        };
        // Every language's rules must build.
        th.rules_for("en")?;
        for lang in th.lang.keys() {
            th.rules_for(lang)?;
        }
        Ok(th)
    }

    /// The stage's overrides laid over the file: `[stage.<rule>]` tables
    /// for every language, `[stage.languages.<code>.<rule>]` for one.
    pub(super) fn with_overrides(
        mut self,
        rules: &toml::Table,
        languages: &BTreeMap<String, toml::Table>,
    ) -> Self {
        self.stage_default = rules.clone();
        self.stage_lang = languages.clone();
        self
    }

    /// One rule family's table for `lang`: the four layers, later ones
    /// winning key by key.
    pub(super) fn table(&self, lang: &str, rule: &str) -> toml::Table {
        let sub = |t: Option<&toml::Value>| match t {
            Some(toml::Value::Table(t)) => t.get(rule).and_then(toml::Value::as_table).cloned(),
            _ => None,
        };
        let layers = [
            self.default.get(rule).and_then(toml::Value::as_table).cloned(),
            sub(self.lang.get(lang)),
            self.stage_default.get(rule).and_then(toml::Value::as_table).cloned(),
            self.stage_lang
                .get(lang)
                .and_then(|t| t.get(rule))
                .and_then(toml::Value::as_table)
                .cloned(),
        ];
        let mut t = toml::Table::new();
        for layer in layers.into_iter().flatten() {
            for (k, v) in layer {
                t.insert(k, v);
            }
        }
        t
    }

    fn params<T: for<'de> Deserialize<'de>>(&self, lang: &str, rule: &str) -> Result<T, String> {
        toml::Value::Table(self.table(lang, rule))
            .try_into()
            .map_err(|e| format!("[{rule}] for `{lang}`: {}", e.to_string().trim_end().replace('\n', " ")))
    }

    /// Every problem with `lang`'s tables, one per rule family (where
    /// [`Thresholds::rules_for`] stops at the first), as (rule, message).
    pub(super) fn check(&self, lang: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut note = |rule: &'static str, r: Result<(), String>| {
            if let Err(e) = r {
                out.push((rule, e));
            }
        };
        note(
            "gopher_quality",
            self.params::<GopherQualityParams>(lang, "gopher_quality").map(drop),
        );
        note(
            "gopher_repetition",
            self.params::<GopherRepetitionParams>(lang, "gopher_repetition")
                .and_then(|p| match p.problems().into_iter().next() {
                    Some(e) => Err(format!("[gopher_repetition] for `{lang}`: {e}")),
                    None => Ok(()),
                }),
        );
        note("c4", self.params::<c4::C4Params>(lang, "c4").map(drop));
        note(
            "fineweb",
            self.params::<fineweb::FinewebParams>(lang, "fineweb").map(drop),
        );
        note(
            "oscar",
            self.params::<oscar::OscarParams>(lang, "oscar").and_then(|p| {
                match oscar::Oscar::problems(&p).into_iter().next() {
                    Some(e) => Err(format!("[oscar] for `{lang}`: {e}")),
                    None => Ok(()),
                }
            }),
        );
        note(
            "curate",
            self.params::<curate::CurateParams>(lang, "curate").map(drop),
        );
        out
    }

    pub(super) fn rules_for(&self, lang: &str) -> Result<RuleSet, String> {
        let q: GopherQualityParams = self.params(lang, "gopher_quality")?;
        let stop_words: HashSet<String> = match &q.stop_words {
            Some(list) => list.iter().cloned().collect(),
            None => STOP_WORDS
                .iter()
                .find(|(code, _)| *code == lang)
                .map(|(_, list)| {
                    list.lines()
                        .map(str::trim)
                        .filter(|w| !w.is_empty())
                        .take(q.stop_words_top.unwrap_or(usize::MAX))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        };
        // A language without a list cannot fail a rule it has no data for.
        let mut q = q;
        if stop_words.is_empty() {
            q.min_stop_words = None;
        }
        let rep: GopherRepetitionParams = self.params(lang, "gopher_repetition")?;
        if let Some(p) = rep.problems().into_iter().next() {
            return Err(format!("[gopher_repetition] for `{lang}`: {p}"));
        }
        Ok(RuleSet {
            repetition: gopher::GopherRepetition::new(rep),
            quality: gopher::GopherQuality::new(q, stop_words),
            c4: c4::C4::new(self.params(lang, "c4")?),
            fineweb: fineweb::Fineweb::new(self.params(lang, "fineweb")?),
            oscar: {
                let p: oscar::OscarParams = self.params(lang, "oscar")?;
                if let Some(e) = oscar::Oscar::problems(&p).into_iter().next() {
                    return Err(format!("[oscar] for `{lang}`: {e}"));
                }
                oscar::Oscar::new(p)
            },
            curate: curate::Curate::new(self.params(lang, "curate")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Quality, QualityConfig, Rule};
    use crate::batch::CoreBuilder;
    use crate::ledger::Reason;
    use crate::stages::Stage;

    /// 21 words: short of Gopher's 50, fine by every other Gopher check.
    const SHORT: &str = "The purpose of this text is to be short and to have only twenty words with the meaning that follows here.";

    fn config(toml_text: &str) -> QualityConfig {
        let mut c: QualityConfig = toml::from_str(toml_text).unwrap();
        c.rules = vec![Rule::GopherQuality];
        c
    }

    fn drops(c: QualityConfig) -> Vec<Reason> {
        let q = Quality::new(c).unwrap();
        let mut b = CoreBuilder::with_capacity(1, 200);
        b.push("s", "f", 1, SHORT, None, None);
        let out = q.process(&b.finish()).unwrap();
        out.drops.iter().map(|d| d.reason).collect()
    }

    #[test]
    fn the_manifest_sets_thresholds_for_all_languages_and_for_one() {
        assert_eq!(drops(config("")), [Reason::GopherShortDoc], "shipped: 50 words");
        let every = "[gopher_quality]\nmin_doc_words = 10\n";
        assert!(drops(config(every)).is_empty(), "the stage's table wins");
        let one = format!("{every}[languages.en.gopher_quality]\nmin_doc_words = 30\n");
        assert_eq!(
            drops(config(&one)),
            [Reason::GopherShortDoc],
            "a language's table wins over the stage's"
        );
        let other = format!("{every}[languages.de.gopher_quality]\nmin_doc_words = 30\n");
        assert!(drops(config(&other)).is_empty(), "German's table leaves English alone");
    }

    #[test]
    fn problems_name_the_table_that_holds_them() {
        let c = config(
            "[gopher_quality]\nmin_alpha_word_ratio = 0.6\n\
             [languages.de.fineweb]\nshort_line_length = \"x\"\n\
             [languages.fr.gopher_qualty]\nmin_doc_words = 3\n",
        );
        let p = c.problems();
        let fields: Vec<Option<&str>> = p.iter().map(|(f, _)| *f).collect();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(fields.contains(&Some("gopher_quality")), "{p:?}");
        assert_eq!(fields.iter().filter(|f| **f == Some("languages")).count(), 2);
        let text: String = p.iter().map(|(_, m)| m.as_str()).collect();
        assert!(text.contains("min_alpha_word_ratio") && text.contains("gopher_qualty"));
        assert!(text.contains("for `de`") && !text.contains('\n'), "{text}");
        assert!(config("[c4]\nmin_num_sentences = 2\n").problems().is_empty());
    }
}
