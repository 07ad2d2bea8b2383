//! `forja eval-lid` and `forja train-lid-groups`: measuring a language-ID
//! backend on labelled text, and training the close-group model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::Outcome;

/// `forja eval-lid`.
#[derive(clap::Args, Debug)]
pub struct EvalLidArgs {
    /// Files of `lang<TAB>text` lines (`\n` in the text for a newline).
    pub data: Vec<PathBuf>,
    /// The identifier (lingua needs a build with `--features lingua`).
    #[arg(long, value_enum, default_value_t)]
    pub backend: forja::LidBackend,
    /// Another fastText model (default: the compiled-in lid.176).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Line confidence threshold of the document rule.
    #[arg(long, default_value_t = forja::LidConfig::default().line_threshold)]
    pub line_threshold: f64,
    /// Another second-opinion model for close languages (default: the
    /// compiled-in `models/lid-groups.bin`, as the `lid` stage uses).
    #[arg(long)]
    pub groups: Option<PathBuf>,
    /// Measure the backend alone, without the second opinion the `lid`
    /// stage uses by default (`second_opinion = false`).
    #[arg(long, conflicts_with = "groups")]
    pub no_second_opinion: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `forja eval-lid`: accuracy per language and confusions, built as the
/// `lid` stage builds its identifier.
pub fn eval_lid(a: EvalLidArgs) -> Outcome {
    let EvalLidArgs {
        data,
        backend,
        model,
        line_threshold,
        groups,
        no_second_opinion,
        json,
    } = a;
    // The same construction as the `lid` stage's, so what is measured is what runs.
    let path_text = |p: PathBuf| p.display().to_string();
    let config = forja::LidConfig {
        mode: forja::Mode::Annotate,
        backend,
        model: model.map(path_text),
        second_opinion: !no_second_opinion,
        groups: groups.map(path_text),
        line_threshold,
        top: 1,
        ..Default::default()
    };
    let lid = forja::Lid::new(config, &forja::BuildContext { base: ".".into() })?;
    let mut samples = Vec::new();
    for d in &data {
        samples.extend(forja::read_lid_samples(d).map_err(anyhow::Error::msg)?);
    }
    if samples.is_empty() {
        bail!("no labelled text in {data:?}");
    }
    let min_letters = lid.config().min_line_letters;
    let report = forja::evaluate_lid(lid.identifier(), &samples, line_threshold, min_letters);
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<6} {:>6} {:>9} {:>13}  mistaken for",
        "lang", "docs", "accuracy", "unidentified"
    );
    for (lang, r) in &report.languages {
        let confused: Vec<String> = r
            .confused_with
            .iter()
            .map(|(l, n)| format!("{l}:{n}"))
            .collect();
        println!(
            "{lang:<6} {:>6} {:>9.3} {:>13}  {}",
            r.total,
            forja::LidReport::accuracy(r),
            r.unidentified,
            confused.join(" ")
        );
    }
    let c = &report.calibration;
    println!(
        "lang_score: expected calibration error {:.4}; {} wrong answers, {} of them scored >= 0.99",
        c.ece, c.wrong, c.wrong_scored_high
    );
    let (worst, wacc) = report.worst().unwrap_or(("-", 0.0));
    println!(
        "macro accuracy {:.4}, worst {worst} {wacc:.3}; {:.0} docs/s, {:.2} MB/s on one thread",
        report.macro_accuracy(),
        report.documents as f64 / report.seconds.max(1e-9),
        report.bytes as f64 / 1e6 / report.seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// `forja train-lid-groups`.
#[derive(clap::Args, Debug)]
pub struct TrainLidGroupsArgs {
    /// Files of `lang<TAB>text` lines.
    pub data: Vec<PathBuf>,
    /// Where to write the model.
    #[arg(long, default_value = "models/lid-groups.bin")]
    pub out: PathBuf,
    /// N-grams kept per language.
    #[arg(long, default_value_t = 6000)]
    pub keep: usize,
}

/// `forja train-lid-groups`: trains and writes the close-group model.
pub fn train_lid_groups(a: TrainLidGroupsArgs) -> Outcome {
    let TrainLidGroupsArgs { data, out, keep } = a;
    let mut samples = Vec::new();
    for d in &data {
        samples.extend(forja::read_lid_samples(d).map_err(anyhow::Error::msg)?);
    }
    let model = forja::GroupModel::train(
        samples.iter().map(|s| (s.lang.as_str(), s.text.as_str())),
        keep,
    );
    model
        .save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    let mut per_lang = std::collections::BTreeMap::<&str, usize>::new();
    for s in &samples {
        *per_lang.entry(s.lang.as_str()).or_default() += s.text.len();
    }
    println!(
        "{}: languages {}",
        out.display(),
        model.languages().join(" ")
    );
    forja::describe_groups(&model, std::io::stdout())?;
    for l in model.languages() {
        println!("  {l}: {:.2} MB of training text", per_lang[l] as f64 / 1e6);
    }
    Ok(ExitCode::SUCCESS)
}
