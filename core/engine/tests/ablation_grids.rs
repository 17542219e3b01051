//! Every grid file under `ablations/` (sub-folders such as `ablations/gpu/` included) parses and
//! expands with the grid parser, names built-in plugins with parameters they accept, builds its
//! network, and collects ensemble members. Data is not loaded: the GPU grids read CIFAR-10 from
//! a user folder.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod builtins;

use std::path::{Path, PathBuf};

use ablate_engine::model::Model;
use ablate_engine::schedule::Protocol;
use ablate_grid::Grid;
use ablate_sdk::FactorKind;

fn grid_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            grid_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// (channels, height, width, classes) of a dataset, from the grid crate's facts.
fn shape(dataset: &str) -> (i64, i64, i64, i64) {
    let f = ablate_grid::config::dataset_facts(dataset).unwrap_or_else(|| panic!("unknown dataset {dataset}"));
    (f.shape.0 as i64, f.shape.1 as i64, f.shape.2 as i64, f.classes as i64)
}

#[test]
fn every_grid_under_ablations_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ablations");
    let mut files = Vec::new();
    grid_files(&root, &mut files);
    files.sort();
    let names: Vec<String> = files.iter().map(|f| f.strip_prefix(&root).unwrap().display().to_string()).collect();
    for expected in [
        "quickstart.json",
        "gpu/paper-resnet20-cifar10.json",
        "gpu/paper-resnet20-frn-cifar10.json",
        "gpu/paper-resnet20-noaug-cifar10.json",
        "gpu/fashion-mnist-resnet20-standin.json",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} not found among {names:?}");
    }
    let (_dir, registry) = builtins::registry();
    for file in &files {
        let grid = Grid::from_path(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!grid.cells.is_empty(), "{}", file.display());
        for u in grid.plugin_refs() {
            let kind = match u.kind {
                "prior" => FactorKind::Prior,
                "integrator" => FactorKind::Integrator,
                "noise" => FactorKind::Noise,
                "likelihood" => FactorKind::Likelihood,
                other => panic!("plugin kind {other}"),
            };
            registry
                .validate(kind, &u.name, &u.params)
                .unwrap_or_else(|e| panic!("{} {}: {e}", file.display(), u.source));
        }
        for cell in &grid.cells {
            let c = &cell.config;
            let (ch, h, w, classes) = shape(&c.data.dataset);
            let lik = registry.likelihood(&c.likelihood.name, &c.likelihood.params).unwrap();
            Model::new(&c.model, lik.model(), (ch, h, w), classes)
                .unwrap_or_else(|e| panic!("{} cell {}: {e}", file.display(), cell.index));
            let protocol = Protocol::new(&c.sampler, 1, c.temperature);
            assert!(protocol.expected_members() > 0, "{} cell {}: no ensemble member", file.display(), cell.index);
        }
    }
}

#[test]
fn the_paper_grid_is_the_papers_sweep() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ablations/gpu/paper-resnet20-cifar10.json");
    let grid = Grid::from_path(&file).unwrap();
    assert_eq!(grid.cells.len(), 51);
    let mut temps: Vec<f64> = grid.cells.iter().map(|c| c.config.temperature).collect();
    temps.sort_by(f64::total_cmp);
    temps.dedup();
    assert_eq!(temps.len(), 17);
    for (i, t) in temps.iter().enumerate() {
        let x = -4.0 + 0.25 * i as f64;
        assert!((t.log10() - x).abs() < 1e-5, "T {t} is not 10^{x}");
    }
    let mut seeds: Vec<u64> = grid.cells.iter().map(|c| c.config.seed).collect();
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds, [1, 2, 3]);
    let c = &grid.cells[0].config;
    let s = &c.sampler;
    assert_eq!(
        (s.epochs, s.batch_size, s.cycle_length, s.cycle_start_sampling, s.precond_batches),
        (1500, 128, 50, 150, 32)
    );
    assert_eq!((s.lr, s.momentum_decay), (0.1, 0.98));
    assert_eq!(c.data.dataset, "cifar10");
    assert!(c.data.path.is_some() && !c.data.normalize);
    assert_eq!(c.likelihood.params["norm"], "batchnorm");
    assert_eq!((c.likelihood.params["augment"].as_bool(), c.likelihood.params["pad"].as_i64()), (Some(true), Some(4)));
    // 28 members: epochs 150, 200, ..., 1500 (390 steps per epoch).
    assert_eq!(Protocol::new(s, 390, 1.0).expected_members(), 28);
}
