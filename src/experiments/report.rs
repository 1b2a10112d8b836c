//! `baton experiment results`: an experiment's results from a store, as a
//! table for people or as JSON.

use std::fmt::Write as _;
use std::path::Path;

use super::live::{Report, results_for};
use super::{Experiment, load_dir};
use crate::store::{Store, StoreOptions};

/// Loads the experiment `id` from `experiments_dir` (checked against the
/// flags in `flags_dir`) and counts its results in the store at
/// `database_url`.
pub async fn load_report(
    database_url: &str,
    experiments_dir: &Path,
    flags_dir: &Path,
    id: &str,
) -> anyhow::Result<Report> {
    let flags = crate::flags::load_or_empty(flags_dir)
        .map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?
        .set;
    let load = load_dir(experiments_dir).map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?;
    let list = Experiment::compile_all(&load.experiments, &flags).map_err(|issues| {
        anyhow::anyhow!(
            "the experiments in {} have errors:\n{}",
            experiments_dir.display(),
            crate::flow::validate::format_human(&issues)
        )
    })?;
    let Some(exp) = list.iter().find(|e| e.id == id) else {
        let known: Vec<&str> = list.iter().map(|e| e.id.as_str()).collect();
        anyhow::bail!(
            "[EXPERIMENT_NOT_FOUND] experiment `{id}` is not defined in {}\nhint: defined: {}",
            experiments_dir.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let store = Store::connect(
        database_url,
        StoreOptions {
            max_connections: 2,
            ..StoreOptions::default()
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "[{}] opening {}: {e}",
            e.code(),
            crate::app::redact(database_url)
        )
    })?;
    let report = results_for(&store, &flags, exp)
        .await
        .map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()));
    store.close().await;
    report
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The report as a table: one row per arm, then the sample-ratio check.
pub fn format_human(report: &Report) -> String {
    let r = &report.results;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "experiment {} (flag {}, control {}); unit: users, forced sessions left out",
        report.experiment, report.flag, r.control
    );
    let mut rows = vec![[
        "arm".to_owned(),
        "exposed".to_owned(),
        "converted".to_owned(),
        "rate".to_owned(),
        "95% interval".to_owned(),
        "vs control".to_owned(),
        "p-value".to_owned(),
        "P(beats control)".to_owned(),
    ]];
    for arm in &r.arms {
        let name = if arm.is_control {
            format!("{} (control)", arm.arm)
        } else {
            arm.arm.clone()
        };
        let (diff, p, beat) = match &arm.vs_control {
            Some(c) => (
                match c.relative {
                    Some(rel) => format!("{:+.1} pp ({:+.1}%)", c.absolute * 100.0, rel * 100.0),
                    None => format!("{:+.1} pp", c.absolute * 100.0),
                },
                format!("{:.4}", c.p_value),
                pct(c.chance_to_beat_control),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        rows.push([
            name,
            arm.exposures.to_string(),
            arm.conversions.to_string(),
            arm.rate.map(pct).unwrap_or_else(|| "-".into()),
            arm.interval
                .map(|i| format!("[{}, {}]", pct(i.low), pct(i.high)))
                .unwrap_or_else(|| "-".into()),
            diff,
            p,
            beat,
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    match &r.sample_ratio {
        None => {
            let _ = writeln!(
                out,
                "sample ratio: not checked (no exposures, or the flag has no single `fractional` split)"
            );
        }
        Some(s) if s.mismatch => {
            let _ = writeln!(
                out,
                "sample ratio: MISMATCH (chi-square {:.2}, p = {:.2e}{}): the split is broken; \
                 do not trust the numbers above",
                s.chi_square,
                s.p_value,
                if s.unexpected_arms.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", exposures in arms without weight: {}",
                        s.unexpected_arms.join(", ")
                    )
                }
            );
        }
        Some(s) => {
            let _ = writeln!(
                out,
                "sample ratio: ok (chi-square {:.2}, p = {:.3})",
                s.chi_square, s.p_value
            );
        }
    }
    out
}
