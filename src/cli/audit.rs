//! `forja audit`, `report` and `verify`: where documents and tokens went,
//! the run's HTML report, and its checksums checked again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::Outcome;

/// `forja audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The output folder.
    pub dir: PathBuf,
    /// A document id: dropped (stage, reason, detail) or kept (shards and token ranges).
    #[arg(long, conflicts_with_all = ["shard", "token"])]
    pub doc: Option<String>,
    /// A shard: its prefix under megatron/ (train/en/00000) or a path to it.
    #[arg(long, requires = "token")]
    pub shard: Option<String>,
    /// A token's 0-based position in the shard.
    #[arg(long, requires = "shard")]
    pub token: Option<u64>,
    /// Documents and tokens per licence and per source, in the shards and dropped.
    #[arg(long, conflicts_with_all = ["doc", "shard"])]
    pub licences: bool,
}

/// `forja audit`: a document's fate, a token's origin or the licence
/// table, as JSON on standard output.
pub fn audit(a: AuditArgs) -> Outcome {
    let AuditArgs {
        dir,
        doc,
        shard,
        token,
        licences,
    } = a;
    let json = match (doc, shard, token) {
        _ if licences => serde_json::to_string_pretty(&forja::licences(&dir)?)?,
        (Some(id), _, _) => {
            let fate = forja::doc_fate(&dir, &id)?;
            if fate.dropped.is_none() && fate.shards.is_empty() && fate.parquet.is_none() {
                bail!(
                    "{}: no document {id} in the ledger, the Parquet output or the shards",
                    dir.display()
                );
            }
            serde_json::to_string_pretty(&fate)?
        }
        (None, Some(s), Some(t)) => {
            serde_json::to_string_pretty(&forja::token_origin(&dir, &s, t)?)?
        }
        _ => bail!("give --doc ID, --shard S with --token N, or --licences"),
    };
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// `forja report` and `forja verify`: one output folder.
#[derive(clap::Args, Debug)]
pub struct DirArgs {
    /// The output folder.
    pub dir: PathBuf,
}

/// `forja report`: writes the folder's report.html.
pub fn report(a: DirArgs) -> Outcome {
    let path = forja::write_report(&a.dir)?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `forja verify`: checksums the outputs and inputs again (exit 1 on any
/// mismatch).
pub fn verify(a: DirArgs) -> Outcome {
    let dir = a.dir;
    let v = forja::verify(&dir)?;
    for m in &v.mismatches {
        println!("{m}");
    }
    println!(
        "{}: {} outputs and {} inputs checked, {} mismatch(es)",
        dir.display(),
        v.outputs_checked,
        v.inputs_checked,
        v.mismatches.len()
    );
    Ok(if v.mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
