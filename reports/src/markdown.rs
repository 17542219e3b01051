//! `report.md`, rendered by hand: run facts, verdicts, per-level tables, ensemble-size
//! summaries, diagnostics, missing cells, plots and the column reference.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::aggregate::{Level, Stat};
use crate::load::{label_string, Run, Status};
use crate::verdict::{self, fmt_t, Point};
use crate::LevelVerdict;

/// Everything the report shows.
pub struct Input<'a> {
    pub run: &'a Run,
    pub levels: &'a [Level],
    pub verdicts: &'a [LevelVerdict],
    pub missing: &'a [String],
    /// Number of expected cells, when the caller knows the grid.
    pub expected: Option<usize>,
    pub plots: &'a [PathBuf],
    /// Plots are linked relative to this folder.
    pub out_dir: &'a Path,
}

/// Escape text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_else(|| "—".to_string())
}

/// `mean ± se`, `mean` without se, `—` without mean.
pub fn pm(s: Stat) -> String {
    match (s.mean, s.se) {
        (Some(m), Some(se)) => format!("{} ± {}", num(m), num(se)),
        (Some(m), None) => num(m),
        _ => "—".to_string(),
    }
}

fn point_pm(p: &Point) -> String {
    pm(Stat { mean: Some(p.mean), se: p.se })
}

fn t_label(t: f64) -> String {
    if t == 0.0 {
        "0 (SGD)".to_string()
    } else {
        fmt_t(t)
    }
}

fn labels_text(run: &Run, id: &str) -> String {
    run.cells
        .iter()
        .find(|c| c.id == id)
        .map(|c| {
            c.labels
                .iter()
                .filter(|(k, _)| k != "temperature")
                .map(|(k, v)| format!("{k}={}", label_string(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Best posterior temperature (T > 0) of a metric.
fn best(points: &[Point], lower_is_better: bool) -> Option<Point> {
    points.iter().filter(|p| p.temperature > 0.0 && p.mean.is_finite()).copied().reduce(|a, b| {
        let b_better = if lower_is_better { b.mean < a.mean } else { b.mean > a.mean };
        if b_better {
            b
        } else {
            a
        }
    })
}

fn verdict_text(v: &verdict::Verdict) -> String {
    format!("**{}** ({})", v.outcome.as_str(), v.reason)
}

/// Render the whole report.
pub fn render(input: &Input) -> String {
    let mut md = String::new();
    header(&mut md, input);
    verdicts(&mut md, input);
    per_level(&mut md, input);
    growth(&mut md, input);
    prior_predictive(&mut md, input);
    diagnostics(&mut md, input);
    missing(&mut md, input);
    plots(&mut md, input);
    let _ = writeln!(md, "## Files and columns\n");
    md.push_str(crate::COLUMNS_MD);
    md
}

fn header(md: &mut String, input: &Input) {
    let run = input.run;
    let m = &run.manifest;
    let title = run.grid.name.as_deref().unwrap_or("ablate run");
    let _ = writeln!(md, "# {title}\n");
    if let Some(d) = &run.grid.description {
        let _ = writeln!(md, "{d}\n");
    }
    let _ = writeln!(md, "## Run\n\n| | |\n| --- | --- |");
    let mut fact = |k: &str, v: Option<String>| {
        let _ = writeln!(md, "| {k} | {} |", cell(v.as_deref().unwrap_or("(not recorded)")));
    };
    fact("run folder", Some(format!("`{}`", run.dir.display())));
    fact("command", Some(format!("`{}`", m.command)));
    fact("grid file", Some(format!("`{}` (sha256 `{}`)", m.grid_file, m.grid_sha256)));
    fact("created", Some(m.created.clone()));
    fact("ablate version", Some(m.ablate_version.clone()));
    fact("git revision", m.git_revision.as_ref().map(|g| format!("`{g}`")));
    fact("libtorch", m.libtorch_version.clone());
    fact("device", Some(m.device.clone()));
    let mc = &m.machine;
    fact("machine", Some(format!("{}, {} CPUs, {}", mc.hostname, mc.cpus, mc.os)));
    let wall = run.total_wall_seconds();
    fact("wall time (sum over cells)", Some(format!("{wall:.1} s ({:.2} h)", wall / 3600.0)));
    let count = |s: Status| run.cells.iter().filter(|c| c.status == s).count();
    let unfinished = count(Status::Running) + count(Status::NotStarted);
    fact(
        "cells",
        Some(format!(
            "{} found: {} done, {} failed, {} diverged, {} unfinished; {} expected, {} of them absent or unfinished",
            run.cells.len(),
            count(Status::Done),
            count(Status::Failed),
            count(Status::Diverged),
            unfinished,
            input.expected.map(|e| e.to_string()).unwrap_or_else(|| "(not given)".into()),
            input.missing.len()
        )),
    );
    let _ = writeln!(md);
    if !m.plugins.is_empty() {
        let _ = writeln!(md, "### Plugins\n\n| name | path | sha256 |\n| --- | --- | --- |");
        for p in &m.plugins {
            let _ = writeln!(md, "| {} | `{}` | `{}` |", cell(&p.name), cell(&p.path), cell(&p.sha256));
        }
        let _ = writeln!(md);
    }
}

fn verdicts(md: &mut String, input: &Input) {
    let _ = writeln!(md, "## Cold posterior effect\n\nRule: {}\n", verdict::RULE);
    let _ = writeln!(
        md,
        "| level | NLL: verdict | best 0<T<1 | at T=1 | accuracy: verdict | best 0<T<1 | at T=1 |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    );
    let side = |v: &verdict::Verdict| {
        let best =
            v.best_cold.map(|p| format!("T={}: {}", fmt_t(p.temperature), point_pm(&p))).unwrap_or_else(|| "—".into());
        let one = v.at_one.map(|p| point_pm(&p)).unwrap_or_else(|| "—".into());
        format!("**{}** | {best} | {one}", v.outcome.as_str())
    };
    for v in input.verdicts {
        let _ = writeln!(md, "| {} | {} | {} |", cell(&v.level), side(&v.nll), side(&v.accuracy));
    }
    let _ = writeln!(md);
    let unstable = unstable_cells(input.run);
    if !unstable.is_empty() {
        let _ = writeln!(
            md,
            "**Warning:** {} done cell(s) had a kinetic temperature more than {} times max(T, 1) (unstable \
             dynamics, usually a sampler.lr too large for the likelihood); they count in the means and verdicts \
             above. See \"Unstable cells\" under Diagnostics.\n",
            unstable.len(),
            ablate_records::KINETIC_ALARM
        );
    }
}

/// Done cells whose kinetic temperature crossed the engine's alarm in some epoch, with the
/// first such epoch.
fn unstable_cells(run: &Run) -> Vec<(&crate::load::Cell, &ablate_records::EpochRow)> {
    run.cells
        .iter()
        .filter(|c| c.status == Status::Done)
        .filter_map(|c| Some((c, c.epochs.as_deref()?.iter().find(|r| r.kinetic_alarm())?)))
        .collect()
}

fn per_level(md: &mut String, input: &Input) {
    let _ = writeln!(
        md,
        "## Results by factor level\n\nEnsemble metrics on the test set, mean ± standard error \
         over seeds (done cells only; one seed: the test-set standard error).\n"
    );
    for (level, v) in input.levels.iter().zip(input.verdicts) {
        let _ = writeln!(md, "### {}\n", level.name);
        let _ = writeln!(
            md,
            "| T | seeds done | accuracy | NLL | Brier | ECE | failed | diverged | unfinished |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for r in &level.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t_label(r.temperature),
                r.n_done,
                pm(r.stat("accuracy")),
                pm(r.stat("nll")),
                pm(r.stat("brier")),
                pm(r.stat("ece")),
                r.n_failed,
                r.n_diverged,
                r.n_unfinished
            );
        }
        let _ = writeln!(md);
        let best_text = |p: Option<Point>| {
            p.map(|p| format!("T = {} ({})", fmt_t(p.temperature), point_pm(&p))).unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            md,
            "- Best temperature (T > 0) by NLL: {}; by accuracy: {}",
            best_text(best(&level.points("nll"), true)),
            best_text(best(&level.points("accuracy"), false))
        );
        match (level.sgd("accuracy"), level.sgd("nll")) {
            (None, None) => {
                let _ = writeln!(
                    md,
                    "- SGD reference (T = 0): no T = 0 cell with results (none in the grid, or all failed or diverged)"
                );
            }
            (a, n) => {
                let _ = writeln!(
                    md,
                    "- SGD reference (T = 0): accuracy {}, NLL {}",
                    a.map(pm).unwrap_or_else(|| "—".into()),
                    n.map(pm).unwrap_or_else(|| "—".into())
                );
            }
        }
        let _ = writeln!(md, "- Cold posterior effect, NLL: {}", verdict_text(&v.nll));
        let _ = writeln!(md, "- Cold posterior effect, accuracy: {}\n", verdict_text(&v.accuracy));
    }
}

fn growth(md: &mut String, input: &Input) {
    let _ = writeln!(
        md,
        "## Ensemble size\n\nMean over done seeds of the ensemble of the first member only and \
         of all members (full curves in `growth.csv` and `plots/growth_nll_*.svg`).\n"
    );
    for level in input.levels {
        let temps = level.growth_temperatures();
        if temps.is_empty() {
            continue;
        }
        let _ = writeln!(md, "### {}\n", level.name);
        let _ = writeln!(
            md,
            "| T | members | accuracy (1) | accuracy (all) | NLL (1) | NLL (all) |\n\
             | --- | --- | --- | --- | --- | --- |"
        );
        for t in temps {
            let acc = level.growth_curve("accuracy", t);
            let nll = level.growth_curve("nll", t);
            let first = |c: &[(i64, f64)]| c.iter().find(|(m, _)| *m == 1).map(|(_, v)| *v);
            let last = |c: &[(i64, f64)]| c.last().map(|(_, v)| *v);
            let members = acc.last().or(nll.last()).map(|(m, _)| m.to_string()).unwrap_or_default();
            let _ = writeln!(
                md,
                "| {} | {members} | {} | {} | {} | {} |",
                t_label(t),
                opt(first(&acc)),
                opt(last(&acc)),
                opt(first(&nll)),
                opt(last(&nll))
            );
        }
        let _ = writeln!(md);
    }
}

/// The prior predictive check per factor level: pooled over the level's cells (the check does
/// not depend on T; each cell draws its own prior samples).
fn prior_predictive(md: &mut String, input: &Input) {
    let run = input.run;
    let mut levels: Vec<(String, Vec<&crate::load::PriorPredictive>)> = Vec::new();
    for c in &run.cells {
        let Some(pp) = c.metrics.as_ref().and_then(|m| m.prior_predictive.as_ref()) else { continue };
        let key: Vec<String> = c
            .labels
            .iter()
            .filter(|(k, _)| k != "temperature" && k != "seed")
            .map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect();
        let key = if key.is_empty() { "all cells".to_owned() } else { key.join(", ") };
        match levels.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(pp),
            None => levels.push((key, vec![pp])),
        }
    }
    if levels.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Prior predictive\n\nShare of training inputs that a prior draw assigns to its most frequent \
         class (1/K for an even spread over K classes, 1 for a constant predictor): mean over all \
         draws of the level's cells ± its standard error.\n\n| level | cells | draws | inputs | top-class share |\n| --- | --- | --- | --- | --- |"
    );
    for (key, pps) in &levels {
        let draws: usize = pps.iter().map(|p| p.samples).sum();
        let mean = pps.iter().map(|p| p.top_class_fraction * p.samples as f64).sum::<f64>() / draws.max(1) as f64;
        // Pooled SE of a mean of cell means weighted by draws.
        let var = pps.iter().map(|p| (p.top_class_fraction_se * p.samples as f64).powi(2)).sum::<f64>();
        let se = var.sqrt() / draws.max(1) as f64;
        let inputs = pps.first().map(|p| p.inputs).unwrap_or_default();
        let _ = writeln!(md, "| {} | {} | {draws} | {inputs} | {} ± {} |", cell(key), pps.len(), num(mean), num(se));
    }
    let _ = writeln!(md);
}

fn diagnostics(md: &mut String, input: &Input) {
    let run = input.run;
    let _ = writeln!(
        md,
        "## Diagnostics\n\nPer cell: fraction of epochs with the kinetic temperature inside its \
         confidence band, and the kinetic and configurational temperature at the end, against \
         the target T.\n"
    );
    let _ = writeln!(
        md,
        "| cell | labels | target T | status | in-band fraction | kinetic T | configurational T | wall s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for c in &run.cells {
        let d = c.diagnostics();
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            cell(&c.id),
            cell(&labels_text(run, &c.id)),
            fmt_t(c.temperature),
            c.status.as_str(),
            opt(d.kinetic_in_band_fraction),
            opt(d.kinetic_temperature),
            opt(d.configurational_temperature),
            c.wall_seconds.map(|w| format!("{w:.1}")).unwrap_or_else(|| "—".into())
        );
    }
    let _ = writeln!(md);
    let unstable = unstable_cells(run);
    if !unstable.is_empty() {
        let _ = writeln!(
            md,
            "### Unstable cells

Done cells whose kinetic temperature exceeded {} times max(T, 1) in some epoch \
             (first such epoch shown); their ensemble numbers are in the tables above.\n\n\
             | cell | labels | epoch | kinetic T | T that epoch |\n| --- | --- | --- | --- | --- |",
            ablate_records::KINETIC_ALARM
        );
        for (c, r) in unstable {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} |",
                cell(&c.id),
                cell(&labels_text(run, &c.id)),
                r.epoch,
                num(r.kinetic_temperature),
                fmt_t(r.temperature)
            );
        }
        let _ = writeln!(md);
    }
    let bad: Vec<_> = run.cells.iter().filter(|c| matches!(c.status, Status::Failed | Status::Diverged)).collect();
    let _ = writeln!(md, "### Failed and diverged cells\n");
    if bad.is_empty() {
        let _ = writeln!(md, "None.\n");
        return;
    }
    let _ = writeln!(md, "| cell | labels | status | diverged at step | message |\n| --- | --- | --- | --- | --- |");
    for c in bad {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} |",
            cell(&c.id),
            cell(&labels_text(run, &c.id)),
            c.status.as_str(),
            c.diverged_at_step.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
            cell(c.message.as_deref().map_or("—", |m| ablate_records::message_without_cell(m, &c.id)))
        );
    }
    let _ = writeln!(md);
}

fn missing(md: &mut String, input: &Input) {
    let _ = writeln!(md, "## Missing cells\n");
    let scope = match input.expected {
        Some(n) => format!("Of {n} expected cells, "),
        None => "The expected cell list was not given; of the cell folders found, ".to_string(),
    };
    if input.missing.is_empty() {
        let _ = writeln!(md, "{scope}none lacks a finished status.\n");
        return;
    }
    let _ = writeln!(
        md,
        "{scope}{} {} no finished status (absent, not started or still running):\n",
        input.missing.len(),
        if input.missing.len() == 1 { "has" } else { "have" }
    );
    for id in input.missing {
        let status = input.run.cells.iter().find(|c| &c.id == id).map(|c| c.status.as_str()).unwrap_or("absent");
        let labels = labels_text(input.run, id);
        if labels.is_empty() {
            let _ = writeln!(md, "- `{id}` ({status})");
        } else {
            let _ = writeln!(md, "- `{id}` ({status}; {labels})");
        }
    }
    let _ = writeln!(md);
}

fn plots(md: &mut String, input: &Input) {
    if input.plots.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Plots\n");
    for p in input.plots {
        let rel = p.strip_prefix(input.out_dir).unwrap_or(p);
        let rel = rel.to_string_lossy().replace('\\', "/");
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(md, "![{name}]({rel})\n");
    }
}
