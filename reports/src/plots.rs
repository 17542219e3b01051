//! SVG plots with plotters: a metric against temperature (log axis, mean ± se error bars, one
//! series per factor level, the level's SGD value at T = 0 as a dashed horizontal line in the
//! same colour), and NLL against ensemble size (one series per temperature, one plot per level).
//!
//! Plots are rendered into a string and written in one go, so a failed write names its file.
//! The legend holds exactly one entry per series.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::aggregate::Level;
use crate::verdict::fmt_t;
use crate::ReportError;

const SIZE: (u32, u32) = (900, 560);

/// Draw every plot into `dir`; returns the files written.
pub fn draw_all(levels: &[Level], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let mut out = Vec::new();
    for (metric, title) in [("accuracy", "Accuracy"), ("nll", "NLL")] {
        let path = dir.join(format!("{metric}_vs_temperature.svg"));
        write_svg(&path, |svg| metric_vs_temperature(svg, levels, metric, title))?;
        out.push(path);
    }
    let mut used: Vec<String> = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        if level.growth_temperatures().is_empty() {
            continue;
        }
        let mut slug = slug(&level.name);
        if used.contains(&slug) {
            slug = format!("{slug}_{i}");
        }
        used.push(slug.clone());
        let path = dir.join(format!("growth_nll_{slug}.svg"));
        write_svg(&path, |svg| growth_nll(svg, level))?;
        out.push(path);
    }
    Ok(out)
}

/// A file-name-safe version of a level name.
pub fn slug(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    let s = s.trim_matches('_').to_string();
    let s: String = s.chars().take(80).collect();
    if s.is_empty() {
        "all".to_string()
    } else {
        s
    }
}

pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;

pub(crate) fn write_svg(path: &Path, draw: impl FnOnce(&mut String) -> DrawResult) -> Result<(), ReportError> {
    let mut svg = String::new();
    draw(&mut svg).map_err(|e| ReportError::Plot { path: path.to_path_buf(), message: e.to_string() })?;
    crate::atomic::write_bytes(path, svg.as_bytes())
}

/// `(lo, hi)` padded by 5 % (or by a unit-ish amount when flat).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 0.0 {
        let pad = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo - 0.05 * span, hi + 0.05 * span)
    }
}

fn min_max(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

pub(crate) fn metric_vs_temperature(svg: &mut String, levels: &[Level], metric: &str, title: &str) -> DrawResult {
    let series: Vec<(&Level, Vec<crate::verdict::Point>)> = levels
        .iter()
        .map(|l| {
            let pts: Vec<_> = l.points(metric).into_iter().filter(|p| p.temperature > 0.0).collect();
            (l, pts)
        })
        .collect();

    let (t_lo, t_hi) = min_max(series.iter().flat_map(|(_, p)| p.iter().map(|p| p.temperature)));
    let (t_lo, t_hi) = if t_lo.is_finite() { (t_lo / 1.5, t_hi * 1.5) } else { (0.01, 10.0) };
    let sgd: Vec<Option<f64>> = levels.iter().map(|l| l.sgd(metric).and_then(|s| s.mean)).collect();
    let (y_lo, y_hi) = min_max(
        series
            .iter()
            .flat_map(|(_, pts)| {
                pts.iter().flat_map(|p| {
                    let se = p.se.unwrap_or(0.0);
                    [p.mean - se, p.mean + se]
                })
            })
            .chain(sgd.iter().flatten().copied()),
    );
    let (y_lo, y_hi) = padded(y_lo, y_hi);

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} vs temperature (mean ± se over seeds; dashed: SGD, T = 0)"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((t_lo..t_hi).log_scale(), y_lo..y_hi)?;
    chart.configure_mesh().x_desc("temperature T (log scale)").y_desc(title).draw()?;

    for (i, ((level, pts), sgd)) in series.iter().zip(&sgd).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| (p.temperature, p.mean)), color.stroke_width(2)))?
            .label(level.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new((p.temperature, p.mean), 3, color.filled())))?;
        chart.draw_series(pts.iter().filter_map(|p| {
            p.se.map(|se| ErrorBar::new_vertical(p.temperature, p.mean - se, p.mean, p.mean + se, color, 8))
        }))?;
        if let Some(v) = sgd {
            chart.draw_series(DashedLineSeries::new(vec![(t_lo, *v), (t_hi, *v)], 8, 5, color.stroke_width(1)))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn growth_nll(svg: &mut String, level: &Level) -> DrawResult {
    let temps = level.growth_temperatures();
    let curves: Vec<(f64, Vec<(i64, f64)>)> = temps.iter().map(|t| (*t, level.growth_curve("nll", *t))).collect();
    let (m_lo, m_hi) = min_max(curves.iter().flat_map(|(_, c)| c.iter().map(|(m, _)| *m as f64)));
    let (m_lo, m_hi) = if m_lo.is_finite() && m_hi > m_lo {
        (m_lo, m_hi)
    } else if m_lo.is_finite() {
        (m_lo - 0.5, m_hi + 0.5)
    } else {
        (0.0, 1.0)
    };
    let (y_lo, y_hi) = min_max(curves.iter().flat_map(|(_, c)| c.iter().map(|(_, v)| *v)));
    let (y_lo, y_hi) = padded(y_lo, y_hi);

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Ensemble NLL vs members: {}", level.name), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(m_lo..m_hi, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_labels(((m_hi - m_lo).round() as usize + 1).clamp(2, 12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("ensemble members")
        .y_desc("NLL (mean over seeds)")
        .draw()?;
    for (i, (t, curve)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let label = if *t == 0.0 { "T = 0 (SGD)".to_string() } else { format!("T = {}", fmt_t(*t)) };
        chart
            .draw_series(LineSeries::new(curve.iter().map(|(m, v)| (*m as f64, *v)), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(curve.iter().map(|(m, v)| Circle::new((*m as f64, *v), 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
