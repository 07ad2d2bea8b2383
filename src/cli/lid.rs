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
        "lang_score: expected calibration error {:.4}; {} wrong answers, {} of them scored >= 0.99; mean score {:.3} right, {:.3} wrong",
        c.ece, c.wrong, c.wrong_scored_high, c.mean_right, c.mean_wrong
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
    /// Share of each language's texts (every n-th) held out to fit the
    /// calibration of the scores it reports: a model trained without them
    /// scores them, `k` and `beta` are fitted, and the model written is
    /// trained on every text. 0 writes an uncalibrated model.
    #[arg(long, default_value_t = 0.1)]
    pub calibration_share: f64,
}

/// `forja train-lid-groups`: trains and writes the close-group model.
pub fn train_lid_groups(a: TrainLidGroupsArgs) -> Outcome {
    let TrainLidGroupsArgs {
        data,
        out,
        keep,
        calibration_share,
    } = a;
    if !(0.0..0.5).contains(&calibration_share) {
        anyhow::bail!("--calibration-share must be in [0, 0.5), not {calibration_share}");
    }
    let mut samples = Vec::new();
    for d in &data {
        samples.extend(forja::read_lid_samples(d).map_err(anyhow::Error::msg)?);
    }
    let pairs = || samples.iter().map(|s| (s.lang.as_str(), s.text.as_str()));
    let mut model = forja::GroupModel::train(pairs(), keep);
    if calibration_share > 0.0 {
        // Every n-th text of each language is held out.
        let every = (1.0 / calibration_share).round() as usize;
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        let held: Vec<bool> = samples
            .iter()
            .map(|s| {
                let i = seen.entry(s.lang.as_str()).or_default();
                *i += 1;
                (*i).is_multiple_of(every)
            })
            .collect();
        let part = forja::GroupModel::train(
            pairs().zip(&held).filter(|(_, h)| !**h).map(|(p, _)| p),
            keep,
        );
        let held_out = || pairs().zip(&held).filter(|(_, h)| **h).map(|(p, _)| p);
        match part.fit_calibration(held_out()) {
            Some((c, loss)) => {
                let before = part.calibration_loss(held_out(), forja::LidCalibration::NONE);
                println!(
                    "calibration on {} held-out texts: k {} beta {} (log loss {loss:.4}; {} uncalibrated)",
                    held.iter().filter(|h| **h).count(),
                    c.k,
                    c.beta,
                    before.map_or("-".into(), |b| format!("{b:.4}")),
                );
                model.set_calibration(c);
            }
            None => println!("calibration: no held-out text of a group language; none fitted"),
        }
    }
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
