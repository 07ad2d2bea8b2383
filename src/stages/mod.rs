//! Stages: pure functions from a batch of documents to annotations and drops.
//!
//! Every stage implements [`Stage`]. `process` is pure and runs on many
//! batches at once. A stage whose decision depends on other documents
//! (exact dedup keeps the *first* occurrence of a text, wherever it is in
//! the corpus) is a phased stage: it also implements [`Global`], whose
//! methods are pure too. Its scan returns what it found in each batch
//! ([`StageOutput::scan`]); the phased engine (`phased/`) writes that,
//! reduces and clusters it, and hands each batch of the apply pass what was
//! decided for its rows, strictly in input order. No stage touches a file,
//! and the order of threads never reaches an output.
//!
//! Algorithms live in `lid/`, `lm/`, `dedup/`, `tokenizer/` and the
//! engine in `phased/`; the files here are the thin adapters that turn them
//! into stages: a config, the columns it reads and adds, and `process` (and
//! for a phased stage `apply`) over a batch.
//!
//! To add a stage: one file here (or a folder, for a big one) with its
//! config, its [`StageSpec`] (type name, checks, columns, build, an
//! example) and its tests, and one line in the `registry!` list below.
//! The config enum, its dispatch, and the round-trip and check tests over
//! every stage all come from that list.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{Field, Schema};
use serde::{Deserialize, Serialize};

use crate::batch::{self, Core};
use crate::ledger::{Kind, LedgerRow, Reason};

pub use lid::{Backend as LidBackend, Lid};

use crate::phased::{BatchInput, PhasedError, Plan, RunInput, ScanLayout, Scanned};

/// Whether a stage drops documents or only annotates them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Add columns, drop nothing.
    Annotate,
    /// Add columns and drop the documents the stage rejects.
    #[default]
    Filter,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("stage `{stage}`: {message}")]
    Failed { stage: String, message: String },
    #[error("stage `{stage}`: {source}")]
    Phased { stage: String, source: PhasedError },
}

/// What a stage computed for one batch.
#[derive(Default)]
pub struct StageOutput {
    /// Replacement for the `text` column (only normalizing stages set it).
    pub text: Option<ArrayRef>,
    /// One array per field of [`Stage::fields`], in order.
    pub columns: Vec<ArrayRef>,
    /// Rows the stage rejects, with why. Applied only in filter mode. A
    /// reason of kind `modified` marks instead a row whose text the stage
    /// changed: it is recorded in the ledger in every mode, and kept.
    pub drops: Vec<Drop>,
    /// What a phased stage's scan found in the batch, for the engine to
    /// write (see [`Global`]).
    pub scan: Option<Scanned>,
}

impl std::fmt::Debug for StageOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageOutput")
            .field("text", &self.text)
            .field("columns", &self.columns)
            .field("drops", &self.drops)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub row: usize,
    pub reason: Reason,
    pub detail: String,
}

pub trait Stage: Send + Sync {
    /// The name used in stats and the ledger.
    fn name(&self) -> &'static str;
    fn mode(&self) -> Mode;
    /// Columns this stage appends, known before any batch is seen.
    fn fields(&self) -> Vec<Field>;
    /// Stages that need the whole corpus (global dedup) run in phases.
    fn global(&mut self) -> Option<&mut dyn Global> {
        None
    }
    /// The pure, parallel part.
    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError>;
}

/// The phased side of a global stage (see `phased`): every method but the
/// two that say which pass comes next is pure.
pub trait Global: Send + Sync {
    /// Hash-range partitions of its keys: the reduce step's units of work.
    fn partitions(&self) -> usize;
    /// How the engine keeps its scan, and what the apply pass reads back.
    fn layout(&self) -> ScanLayout;
    /// The next pass is the scan: `process` returns [`StageOutput::scan`].
    fn begin_scan(&mut self);
    /// The next pass applies what was decided; `run` is what the earlier
    /// steps left for the whole run.
    fn begin_apply(&mut self, run: RunInput) -> Result<(), PhasedError>;
    /// The combiner of a stage that keeps its own records.
    fn records(&self) -> Option<&dyn crate::phased::Records> {
        None
    }
    /// The apply pass's part after `process`: `input` is what the earlier
    /// steps decided for the batch's rows.
    fn apply(
        &self,
        _batch: &RecordBatch,
        _input: BatchInput,
        _out: &mut StageOutput,
    ) -> Result<(), StageError> {
        Ok(())
    }
    /// Reduces partition `part` of every unit's scan; returns counts for
    /// its marker and, for a stage with its own records, the bytes the
    /// engine keeps for the cluster step.
    fn reduce(&self, plan: &Plan, part: usize) -> Result<Step, PhasedError>;
    /// Turns the reduced partitions into decisions, or a summary the
    /// engine keeps for the apply pass.
    fn cluster(&self, plan: &Plan) -> Result<Step, PhasedError>;
}

/// What a reduce or cluster step did: counts for its marker, and bytes for
/// the engine to write (a stage with its own records).
#[derive(Debug, Default)]
pub struct Step {
    /// Counts recorded in the step's marker.
    pub counts: BTreeMap<String, u64>,
    /// The reduced partition or the summary, when the stage returns one.
    pub output: Option<Vec<u8>>,
}

impl Step {
    /// A step that wrote through the engine's own functions.
    pub fn counts(counts: BTreeMap<String, u64>) -> Self {
        Step {
            counts,
            output: None,
        }
    }
}

/// The apply side of a document-level global stage: drops the rows the
/// cluster step decided on, with `reason` and the kept document's id, and
/// adds the column of those ids (null for kept rows).
fn drop_decided(
    batch: &RecordBatch,
    input: BatchInput,
    reason: Reason,
    out: &mut StageOutput,
) -> Result<(), StageError> {
    let rows = batch.num_rows();
    let decided = match input {
        BatchInput::Decided(d) => d,
        _ => Vec::new(),
    };
    let mut dup_of = arrow_array::builder::StringBuilder::new();
    let mut decided = decided.into_iter().peekable();
    for row in 0..rows {
        match decided.next_if(|(r, _)| *r == row) {
            Some((_, kept)) => {
                dup_of.append_value(&kept);
                out.drops.push(Drop {
                    row,
                    reason,
                    detail: kept.into(),
                });
            }
            None => dup_of.append_null(),
        }
    }
    out.columns.push(Arc::new(dup_of.finish()));
    Ok(())
}

/// What building a stage may need from outside its own parameters.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The manifest's folder: relative paths in stage parameters start here.
    pub base: std::path::PathBuf,
}

/// What a stage's config tells the registry: its type name, checks, the
/// columns it reads and adds, how it is built, and an example.
pub trait StageSpec: Sized {
    /// The `type` of its `[[stage]]` table, and the stage's name in stats,
    /// the ledger and errors.
    const TYPE: &'static str;
    /// Problems with the parameters, each with the field it concerns.
    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        Vec::new()
    }
    /// Columns it reads that earlier stages add.
    fn reads(&self) -> Vec<Reads> {
        Vec::new()
    }
    /// Names of the columns it adds, in the order of [`Stage::fields`].
    fn adds(&self) -> Vec<&'static str>;
    /// Builds the stage (loading models and lists).
    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError>;
    /// A config with parameters away from their defaults, which the tests
    /// round-trip through TOML and check.
    fn example() -> Self;
}

/// A column a stage reads from what earlier stages added.
#[derive(Debug, Clone, PartialEq)]
pub struct Reads {
    /// The column's name.
    pub column: String,
    /// The parameter that makes the stage read it, if one does: a problem
    /// is reported there, else at the stage.
    pub field: Option<&'static str>,
    /// Without the column the stage cannot do its work (a problem), rather
    /// than working from a fallback (a warning).
    pub required: bool,
    /// What the stage does, or cannot do, without it.
    pub without: String,
}

impl Reads {
    /// The `lang` column of the `lid` stage.
    pub fn lang(field: Option<&'static str>, required: bool, without: impl Into<String>) -> Self {
        Reads {
            column: "lang".into(),
            field,
            required,
            without: without.into(),
        }
    }
}

/// The registry: one line per stage, `module: Variant(Config)`, the module
/// named as the stage's type. It declares the modules and generates
/// [`StageConfig`] and its dispatch.
macro_rules! registry {
    ($($module:ident: $variant:ident($config:ident)),* $(,)?) => {
        $(
            pub mod $module;
            pub use $module::$config;
        )*

        /// The `[[stage]]` entries of a manifest, tagged by `type`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum StageConfig {
            $(
                #[doc = concat!("`type = \"", stringify!($module), "\"`.")]
                $variant($config),
            )*
        }

        impl StageConfig {
            /// The stage's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(StageConfig::$variant(_) => <$config as StageSpec>::TYPE,)*
                }
            }

            /// Problems with the parameters, each with the field it concerns.
            pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
                match self {
                    $(StageConfig::$variant(c) => StageSpec::problems(c),)*
                }
            }

            /// Columns it reads that earlier stages add.
            pub fn reads(&self) -> Vec<Reads> {
                match self {
                    $(StageConfig::$variant(c) => StageSpec::reads(c),)*
                }
            }

            /// Names of the columns it adds.
            pub fn adds(&self) -> Vec<&'static str> {
                match self {
                    $(StageConfig::$variant(c) => StageSpec::adds(c),)*
                }
            }

            /// Builds the stage, checking that it adds the columns its
            /// config says.
            pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
                let stage = match self {
                    $(StageConfig::$variant(c) => StageSpec::build(c, ctx)?,)*
                };
                let built: Vec<String> = stage.fields().iter().map(|f| f.name().clone()).collect();
                if built != self.adds() {
                    return Err(StageError::Failed {
                        stage: self.type_name().into(),
                        message: format!(
                            "adds columns {built:?}, not the {:?} its config declares",
                            self.adds()
                        ),
                    });
                }
                Ok(stage)
            }

            /// Every registered stage's example config, in registry order.
            pub fn examples() -> Vec<StageConfig> {
                vec![$(StageConfig::$variant(<$config as StageSpec>::example()),)*]
            }
        }
    };
}

registry! {
    normalize: Normalize(NormalizeConfig),
    exact_dedup: ExactDedup(ExactDedupConfig),
    near_dedup: NearDedup(NearDedupConfig),
    repeated_lines: RepeatedLines(RepeatedLinesConfig),
    length: Length(LengthConfig),
    lid: Lid(LidConfig),
    quality: Quality(QualityConfig),
    perplexity: Perplexity(PerplexityConfig),
    pii: Pii(PiiConfig),
    url_filter: UrlFilter(UrlFilterConfig),
    banned_words: BannedWords(BannedWordsConfig),
    tokenize: Tokenize(TokenizeConfig),
    train_tokenizer: TrainTokenizer(TrainTokenizerConfig),
}

/// A batch after one stage: what is left, and the ledger rows of what was dropped.
pub struct Applied {
    pub batch: RecordBatch,
    pub ledger: Vec<LedgerRow>,
}

/// A dropped row's stage columns as a JSON object, for its ledger row:
/// what `forja audit --doc` shows of a document that is not in the output.
fn annotations(schema: &Schema, cols: &[ArrayRef], first: usize, row: usize) -> String {
    let mut obj = serde_json::Map::new();
    for (i, c) in cols.iter().enumerate() {
        if let Some(v) = crate::batch::cell_json(c.as_ref(), row) {
            obj.insert(schema.field(first + i).name().clone(), v);
        }
    }
    serde_json::Value::Object(obj).to_string()
}

/// Appends a stage's columns and, in filter mode, removes the rows it dropped.
pub fn apply(
    stage: &dyn Stage,
    batch: RecordBatch,
    out: StageOutput,
) -> Result<Applied, StageError> {
    let fail = |message: String| StageError::Failed {
        stage: stage.name().into(),
        message,
    };
    let fields = stage.fields();
    if out.columns.len() != fields.len() {
        return Err(fail(format!(
            "produced {} columns but declares {}",
            out.columns.len(),
            fields.len()
        )));
    }
    let mut schema_fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    if let Some(text) = out.text {
        columns[batch::TEXT] = text;
    }
    for (f, c) in fields.into_iter().zip(out.columns) {
        if c.len() != batch.num_rows() || c.data_type() != f.data_type() {
            return Err(fail(format!(
                "column `{}` has {} rows of {} (expected {} of {})",
                f.name(),
                c.len(),
                c.data_type(),
                batch.num_rows(),
                f.data_type()
            )));
        }
        schema_fields.push(Arc::new(f));
        columns.push(c);
    }
    let annotated = RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), columns)
        .map_err(|e| fail(e.to_string()))?;
    let (edits, drops): (Vec<Drop>, Vec<Drop>) = out
        .drops
        .into_iter()
        .partition(|d| d.reason.kind() == Kind::Modified);
    let core = Core::of(&annotated);
    let n_core = crate::batch::core_fields().len();
    let schema = annotated.schema();
    // An edited row's bytes are those it came with; a dropped row's, those
    // it leaves with (the same, but for normalize).
    let before = Core::of(&batch).text;
    let row = |d: Drop, text: &arrow_array::StringArray| LedgerRow {
        id: core.id.value(d.row).to_string(),
        source: core.source.value(d.row).to_string(),
        file: core.file.value(d.row).to_string(),
        line: core.line.value(d.row),
        stage: stage.name().to_string(),
        reason: d.reason,
        detail: d.detail,
        bytes: text.value(d.row).len() as u64,
        annotations: annotations(&schema, &annotated.columns()[n_core..], n_core, d.row),
    };
    let mut ledger: Vec<LedgerRow> = edits.into_iter().map(|d| row(d, before)).collect();
    if stage.mode() == Mode::Annotate || drops.is_empty() {
        return Ok(Applied {
            batch: annotated,
            ledger,
        });
    }
    let mut keep = vec![true; annotated.num_rows()];
    for d in drops {
        if !std::mem::replace(&mut keep[d.row], false) {
            continue; // a stage listed a row twice; it is dropped once
        }
        ledger.push(row(d, core.text));
    }
    let mask = BooleanArray::from(keep);
    let batch = arrow_select::filter::filter_record_batch(&annotated, &mask)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Applied { batch, ledger })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::CoreBuilder;

    #[test]
    fn apply_drops_in_filter_mode_only() {
        let mut b = CoreBuilder::with_capacity(3, 30);
        for (i, t) in ["a b c d", "x", "hello there friend"].iter().enumerate() {
            b.push("s", "f", i as u64 + 1, t, None, None);
        }
        let batch = b.finish();
        for (mode, rows) in [(Mode::Filter, 2), (Mode::Annotate, 3)] {
            let stage = length::Length::new(LengthConfig {
                mode,
                min_words: Some(2),
                ..Default::default()
            });
            let out = stage.process(&batch).unwrap();
            let applied = apply(&stage, batch.clone(), out).unwrap();
            assert_eq!(applied.batch.num_rows(), rows);
            assert_eq!(applied.batch.num_columns(), batch.num_columns() + 2);
            if mode == Mode::Filter {
                assert_eq!(applied.ledger.len(), 1);
                assert_eq!(applied.ledger[0].line, 2);
                assert_eq!(applied.ledger[0].reason, Reason::TooFewWords);
            }
        }
    }

    #[test]
    fn every_stage_config_round_trips() {
        let configs = StageConfig::examples();
        assert_eq!(configs.len(), 13, "one example per registered stage");
        #[derive(Serialize, Deserialize)]
        struct W {
            stage: Vec<StageConfig>,
        }
        let text = toml::to_string(&W {
            stage: configs.clone(),
        })
        .unwrap();
        let back: W = toml::from_str(&text).unwrap();
        assert_eq!(back.stage, configs);
        // The manifest's `type` is the registered type name.
        let tags: Vec<toml::Value> = toml::from_str::<toml::Table>(&text).unwrap()["stage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].clone())
            .collect();
        for (c, tag) in configs.iter().zip(tags) {
            assert_eq!(tag.as_str(), Some(c.type_name()));
        }
    }
}
