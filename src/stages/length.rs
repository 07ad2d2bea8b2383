//! `length`: keep documents within character and word bounds.
//!
//! Words are runs of non-whitespace, which is what the Gopher and C4 rules
//! count; languages written without spaces need a tokenizer-aware filter.

use std::sync::Arc;

use arrow_array::builder::UInt64Builder;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};

use super::{BuildContext, Drop, Mode, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::ledger::Reason;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthConfig {
    #[serde(default)]
    pub mode: Mode,
    pub min_chars: Option<u64>,
    pub max_chars: Option<u64>,
    pub min_words: Option<u64>,
    pub max_words: Option<u64>,
}

impl LengthConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut p = Vec::new();
        for (lo_name, lo, hi_name, hi) in [
            ("min_chars", self.min_chars, "max_chars", self.max_chars),
            ("min_words", self.min_words, "max_words", self.max_words),
        ] {
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if lo > hi {
                    p.push((
                        Some(lo_name),
                        format!("{lo_name} {lo} is greater than {hi_name} {hi}"),
                    ));
                }
            }
        }
        p
    }
}

pub struct Length {
    config: LengthConfig,
}

impl Length {
    pub fn new(config: LengthConfig) -> Self {
        Length { config }
    }

    fn verdict(&self, chars: u64, words: u64) -> Option<(Reason, String)> {
        let c = &self.config;
        if let Some(min) = c.min_chars.filter(|&m| chars < m) {
            return Some((Reason::TooShort, format!("{chars} chars < {min}")));
        }
        if let Some(max) = c.max_chars.filter(|&m| chars > m) {
            return Some((Reason::TooLong, format!("{chars} chars > {max}")));
        }
        if let Some(min) = c.min_words.filter(|&m| words < m) {
            return Some((Reason::TooFewWords, format!("{words} words < {min}")));
        }
        if let Some(max) = c.max_words.filter(|&m| words > m) {
            return Some((Reason::TooManyWords, format!("{words} words > {max}")));
        }
        None
    }
}

impl Stage for Length {
    fn name(&self) -> &'static str {
        <LengthConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![
            Field::new("n_chars", DataType::UInt64, false),
            Field::new("n_words", DataType::UInt64, false),
        ]
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let mut chars = UInt64Builder::with_capacity(batch.num_rows());
        let mut words = UInt64Builder::with_capacity(batch.num_rows());
        let mut drops = Vec::new();
        for (row, t) in text.iter().enumerate() {
            let t = t.unwrap_or_default();
            let c = t.chars().count() as u64;
            let w = t.split_whitespace().count() as u64;
            chars.append_value(c);
            words.append_value(w);
            if let Some((reason, detail)) = self.verdict(c, w) {
                drops.push(Drop {
                    row,
                    reason,
                    detail,
                });
            }
        }
        Ok(StageOutput {
            text: None,
            columns: vec![Arc::new(chars.finish()), Arc::new(words.finish())],
            drops,
            scan: None,
        })
    }
}

impl StageSpec for LengthConfig {
    const TYPE: &'static str = "length";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        LengthConfig::problems(self)
    }

    fn adds(&self) -> Vec<&'static str> {
        vec!["n_chars", "n_words"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(Length::new(self.clone())))
    }

    fn example() -> Self {
        LengthConfig {
            min_chars: Some(5),
            max_words: Some(10),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_give_their_reasons() {
        let s = Length::new(LengthConfig {
            min_chars: Some(3),
            max_chars: Some(100),
            min_words: Some(2),
            max_words: Some(5),
            ..Default::default()
        });
        assert_eq!(s.verdict(2, 1).unwrap().0, Reason::TooShort);
        assert_eq!(s.verdict(101, 3).unwrap().0, Reason::TooLong);
        assert_eq!(s.verdict(10, 1).unwrap().0, Reason::TooFewWords);
        assert_eq!(s.verdict(10, 6).unwrap().0, Reason::TooManyWords);
        assert!(s.verdict(10, 3).is_none());
    }

    #[test]
    fn counts_characters_not_bytes() {
        use crate::batch::CoreBuilder;
        let mut b = CoreBuilder::with_capacity(1, 10);
        b.push("s", "f", 1, "één   twee\ndrie", None, None);
        let out = Length::new(LengthConfig::default())
            .process(&b.finish())
            .unwrap();
        let chars = out.columns[0]
            .as_any()
            .downcast_ref::<arrow_array::UInt64Array>()
            .unwrap();
        let words = out.columns[1]
            .as_any()
            .downcast_ref::<arrow_array::UInt64Array>()
            .unwrap();
        assert_eq!((chars.value(0), words.value(0)), (15, 3));
    }

    #[test]
    fn inverted_bounds_are_a_problem() {
        let c = LengthConfig {
            min_words: Some(9),
            max_words: Some(3),
            ..Default::default()
        };
        assert_eq!(c.problems()[0].0, Some("min_words"));
    }
}
