//! `report.md` sections, CSV files and plots of [`crate::predictions`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::aggregate::{Level, Stat};
use crate::markdown::pm;
use crate::predictions::{to_levels, Sections, MIN_DRAWS_FOR_ESS};
use crate::stats::mcmc::RHAT_THRESHOLD;
use crate::verdict::fmt_t;
use crate::ReportError;

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "—".into()
    }
}

/// T = 1 against the best cold T (smallest mean TV over 0 < T < 1) of one level.
pub fn closeness_verdict(level: &Level) -> String {
    let tv = |r: &crate::aggregate::Row| r.stat("tv");
    let Some(one) = level.rows.iter().find(|r| r.temperature == 1.0) else {
        return "undetermined (no T = 1 cell)".into();
    };
    let best = level
        .rows
        .iter()
        .filter(|r| r.temperature > 0.0 && r.temperature < 1.0 && tv(r).mean.is_some())
        .min_by(|a, b| tv(a).mean.unwrap_or(f64::INFINITY).total_cmp(&tv(b).mean.unwrap_or(f64::INFINITY)));
    let Some(best) = best else { return "undetermined (no 0 < T < 1 cell)".into() };
    let (a, b) = (tv(one), tv(best));
    let (Some(m1), Some(mc)) = (a.mean, b.mean) else { return "undetermined".into() };
    let se = (a.se.unwrap_or(0.0).powi(2) + b.se.unwrap_or(0.0).powi(2)).sqrt();
    let gap = m1 - mc;
    let t = fmt_t(best.temperature);
    let what = if se == 0.0 {
        "undetermined (no standard error)".to_string()
    } else if gap < -2.0 * se {
        "**T = 1 closer**".into()
    } else if gap > 2.0 * se {
        format!("**T = {t} closer**")
    } else {
        "within 2 SE".into()
    };
    format!("{what}: TV {} at T = 1 vs {} at T = {t} (gap {:+.4} ± {:.4})", num(m1), num(mc), gap, se)
}

fn table(md: &mut String, levels: &[Level], metrics: &[(&str, &str)]) {
    let head: Vec<&str> = metrics.iter().map(|(_, h)| *h).collect();
    let _ = writeln!(md, "| level | T | seeds | {} |", head.join(" | "));
    let _ = writeln!(md, "| --- | --- | --- |{}", " --- |".repeat(metrics.len()));
    for l in levels {
        for r in &l.rows {
            let cells: Vec<String> = metrics.iter().map(|(m, _)| pm(r.stat(m))).collect();
            let _ = writeln!(md, "| {} | {} | {} | {} |", l.name, fmt_t(r.temperature), r.n_done, cells.join(" | "));
        }
    }
    md.push('\n');
}

/// The Markdown of the sections (empty when there is nothing to show).
pub fn render(s: &Sections) -> String {
    let mut md = String::new();
    if !s.reference.is_empty() {
        let _ = writeln!(
            md,
            "## Distance to the reference\n\nReference: {} cell(s) (the grid's `reference`); their pooled \
             members' mean predictive is the reference predictive. Per cell: agreement (share of test points \
             whose top-1 class matches the reference's) and total variation (mean over test points of half \
             the L1 distance), from stored predictions; mean ± SE over seeds. Reference cells are compared \
             with the pool of the other reference cells (the floor set by the reference's own sampling noise). \
             Verdict: T = 1 is closer than the best cold T if its TV is smaller by more than 2 combined SEs. \
             Caveat: the TV of a cell includes the Monte Carlo noise of its own finite ensemble (few or diverse \
             members give a larger TV even from the exact posterior), so compare cells with equal member counts, \
             and read the reference's leave-one-out row as the floor for its member count.\n",
            s.reference.len()
        );
        if !s.without_predictions.is_empty() {
            let _ = writeln!(
                md,
                "Left out: {} done cell(s) without stored predictions ({}); a finished cell is not rerun, so \
                 delete its `status.json` and run the grid again to store them.\n",
                s.without_predictions.len(),
                s.without_predictions.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
            );
        }
        if let Some(note) = &s.comparison_note {
            let _ = writeln!(md, "Not computed: {note}.\n");
        } else {
            let levels = to_levels(&s.comparison);
            table(&mut md, &levels, &[("agreement", "agreement"), ("tv", "total variation")]);
            let _ = writeln!(md, "| level | T = 1 vs best cold T (TV to the reference) |\n| --- | --- |");
            for l in &levels {
                let _ = writeln!(md, "| {} | {} |", l.name, closeness_verdict(l));
            }
            md.push('\n');
        }
    }
    if !s.ood.is_empty() {
        let _ = writeln!(
            md,
            "## Out-of-distribution detection\n\nThe ensemble predictive on the in-distribution test set \
             (negatives) and on the `eval.ood` test set (positives); scores: predictive entropy, and \
             1 − max-probability. AUROC (0.5 = chance) and AUPRC (average precision; chance = share of OOD \
             points), from stored predictions, mean ± SE over seeds.\n"
        );
        let levels = to_levels(&s.ood);
        table(
            &mut md,
            &levels,
            &[
                ("auroc_entropy", "AUROC entropy"),
                ("auprc_entropy", "AUPRC entropy"),
                ("auroc_max_prob", "AUROC max-prob"),
                ("auprc_max_prob", "AUPRC max-prob"),
            ],
        );
    }
    if !s.convergence.is_empty() {
        let _ = writeln!(
            md,
            "## Convergence across chains\n\nCells that differ only in seed are chains of one sampler. Split-R-hat \
             and ESS (ArviZ's `rhat(method=\"split\")` and `ess(method=\"mean\")`, no rank normalisation) of \
             (a) each member's mean test log-likelihood (one draw per member) and (b) the training NLL per epoch \
             from the epoch of the first member on. Rule: R-hat < {RHAT_THRESHOLD} on both is called converged; \
             with few draws per chain the estimate is itself noisy, and ESS is left out (—) below {MIN_DRAWS_FOR_ESS} draws per chain.\n"
        );
        let _ = writeln!(
            md,
            "| level | T | chains | members/chain | R-hat test LL | ESS test LL | epochs/chain | R-hat train NLL | ESS train NLL | converged |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for c in &s.convergence {
            let ok = c.rhat_log_likelihood < RHAT_THRESHOLD && c.rhat_train_nll < RHAT_THRESHOLD;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.level,
                fmt_t(c.temperature),
                c.chains,
                c.member_draws,
                num(c.rhat_log_likelihood),
                num(c.ess_log_likelihood),
                c.train_draws,
                num(c.rhat_train_nll),
                num(c.ess_train_nll),
                if ok { "yes" } else { "no" }
            );
        }
        md.push('\n');
    }
    md
}

fn csv_rows(levels: &[Level], metrics: &[&str]) -> String {
    let mut out = format!(
        "level,temperature,seeds,{}\n",
        metrics.iter().map(|m| format!("{m}_mean,{m}_se")).collect::<Vec<_>>().join(",")
    );
    for l in levels {
        for r in &l.rows {
            let vals: Vec<String> = metrics
                .iter()
                .map(|m| {
                    let Stat { mean, se } = r.stat(m);
                    format!(
                        "{},{}",
                        mean.map_or(String::new(), |v| v.to_string()),
                        se.map_or(String::new(), |v| v.to_string())
                    )
                })
                .collect();
            let _ =
                writeln!(out, "\"{}\",{},{},{}", l.name.replace('"', "\"\""), r.temperature, r.n_done, vals.join(","));
        }
    }
    out
}

/// Writes `reference.csv`, `ood.csv`, `convergence.csv` (those that have rows) and the
/// agreement/TV plots; returns the plot files.
pub fn write_files(s: &Sections, out_dir: &Path, plots: bool) -> Result<Vec<PathBuf>, ReportError> {
    let mut drawn = Vec::new();
    if !s.comparison.is_empty() {
        let levels = to_levels(&s.comparison);
        crate::atomic::write_bytes(&out_dir.join("reference.csv"), csv_rows(&levels, &["agreement", "tv"]).as_bytes())?;
        if plots {
            let dir = out_dir.join("plots");
            for (metric, title) in
                [("agreement", "Agreement with the reference"), ("tv", "Total variation to the reference")]
            {
                let path = dir.join(format!("reference_{metric}_vs_temperature.svg"));
                crate::plots::write_svg(&path, |svg| crate::plots::metric_vs_temperature(svg, &levels, metric, title))?;
                drawn.push(path);
            }
        }
    }
    if !s.ood.is_empty() {
        let metrics = ["auroc_entropy", "auprc_entropy", "auroc_max_prob", "auprc_max_prob"];
        crate::atomic::write_bytes(&out_dir.join("ood.csv"), csv_rows(&to_levels(&s.ood), &metrics).as_bytes())?;
    }
    if !s.convergence.is_empty() {
        let mut out =
            "level,temperature,chains,member_draws,rhat_test_ll,ess_test_ll,train_draws,rhat_train_nll,ess_train_nll\n"
                .to_string();
        for c in &s.convergence {
            let _ = writeln!(
                out,
                "\"{}\",{},{},{},{},{},{},{},{}",
                c.level.replace('"', "\"\""),
                c.temperature,
                c.chains,
                c.member_draws,
                c.rhat_log_likelihood,
                c.ess_log_likelihood,
                c.train_draws,
                c.rhat_train_nll,
                c.ess_train_nll
            );
        }
        crate::atomic::write_bytes(&out_dir.join("convergence.csv"), out.as_bytes())?;
    }
    Ok(drawn)
}
