//! NLLs against hand computations, toggles, effective n and augmentation on the testkit's
//! `CpuHost`.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_likelihoods::{
    pad_for, Augmented, BatchNorm, Categorical, Dropout, Frn, NoisyDirichlet, Tempered, AUTO_PAD,
};
use ablate_sdk::testkit::{likelihood_box, CpuHost};
use ablate_sdk::{Factory, Likelihood, ModelToggles, NormKind, Params};

fn new<L: Factory>(json: &str) -> L {
    L::new(&Params::parse(json, &L::params()).unwrap()).unwrap()
}

const LOGITS: [[f64; 4]; 3] = [[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0], [-3.0, 4.0, 10.0, 2.5]];
const LABELS: [usize; 3] = [1, 3, 0];

/// Mean softmax cross-entropy by hand: log Σ_c e^{f_c} − f_y.
fn hand_ce() -> f64 {
    let per: Vec<f64> = LOGITS
        .iter()
        .zip(LABELS)
        .map(|(row, y)| {
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + row.iter().map(|f| (f - m).exp()).sum::<f64>().ln();
            lse - row[y]
        })
        .collect();
    per.iter().sum::<f64>() / per.len() as f64
}

fn nll_of<L: Likelihood>(lik: &L) -> f64 {
    let mut host = CpuHost::new(1);
    let flat: Vec<f64> = LOGITS.iter().flatten().cloned().collect();
    let logits = host.insert(&[3, 4], &flat);
    let labels = host.insert(&[3], &LABELS.map(|y| y as f64));
    let r = host.with_ops(|ops| {
        let t = lik.nll(ops, &ops.borrow(logits), &ops.borrow(labels))?;
        assert!(t.shape().is_empty(), "nll must be 0-d");
        Ok::<f64, String>(t.item())
    });
    assert!(host.take_error().is_none());
    assert_eq!(host.live_tensors(), 2, "nll leaked tensors");
    r.unwrap()
}

#[test]
fn categorical_nll_matches_hand_computation() {
    let want = hand_ce();
    // A value by hand for the second row: uniform over 4 classes → ln 4.
    assert!(want > 0.0);
    for (name, got) in [
        ("categorical", nll_of(&new::<Categorical>("{}"))),
        ("batchnorm", nll_of(&new::<BatchNorm>("{}"))),
        ("frn", nll_of(&new::<Frn>("{}"))),
        ("dropout", nll_of(&new::<Dropout>("{}"))),
        ("augmented", nll_of(&new::<Augmented>("{}"))),
        ("tempered", nll_of(&new::<Tempered>("{}"))),
    ] {
        eprintln!("{name}: nll {got:.12} vs hand {want:.12}");
        assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
    }
    // Row 2 alone (all-zero logits): ln 4.
    let (row, y) = ([0.0; 4], 3);
    let lse = (row.iter().map(|f: &f64| f.exp()).sum::<f64>()).ln();
    assert!((lse - row[y] - 4f64.ln()).abs() < 1e-15);
}

#[test]
fn likelihood_temperature_divides_the_nll() {
    for t in [0.1, 0.5, 3.0] {
        let json = format!(r#"{{"likelihood_temperature": {t}}}"#);
        let got = nll_of(&new::<Tempered>(&json));
        let also = nll_of(&new::<Categorical>(&json));
        assert!((got - hand_ce() / t).abs() < 1e-12 * got.abs(), "T_lik {t}: {got}");
        assert_eq!(got, also);
    }
}

#[test]
fn noisy_dirichlet_nll_matches_hand_computation() {
    for eps in [0.01f64, 1e-4] {
        let lik = new::<NoisyDirichlet>(&format!(r#"{{"dirichlet_noise": {eps}}}"#));
        let mut total = 0.0;
        for (row, y) in LOGITS.iter().zip(LABELS) {
            for (c, f) in row.iter().enumerate() {
                let alpha = if c == y { 1.0 + eps } else { eps };
                let var = (1.0 / alpha + 1.0).ln();
                let mu = alpha.ln() - var / 2.0;
                total += (f - mu).powi(2) / (2.0 * var) + 0.5 * (2.0 * std::f64::consts::PI * var).ln();
            }
        }
        let want = total / 3.0;
        let got = nll_of(&lik);
        eprintln!("noisy-dirichlet ε={eps}: nll {got:.10} vs hand {want:.10}");
        assert!((got - want).abs() < 1e-11 * want.abs(), "{got} vs {want}");
        // With a likelihood temperature.
        let lik = new::<NoisyDirichlet>(&format!(r#"{{"dirichlet_noise": {eps}, "likelihood_temperature": 0.25}}"#));
        let got = nll_of(&lik);
        assert!((got - want / 0.25).abs() < 1e-11 * got.abs());
    }
    // Only the Dirichlet preset publishes its noise parameter.
    assert!(likelihood_box::<Categorical>(r#"{"dirichlet_noise": 0.1}"#).is_err());
}

#[test]
fn bad_batches_are_errors() {
    let lik = new::<Categorical>("{}");
    let mut host = CpuHost::new(1);
    let logits = host.insert(&[2, 3], &[0.0; 6]);
    let labels = host.insert(&[3], &[0.0, 1.0, 2.0]);
    let r = host.with_ops(|ops| lik.nll(ops, &ops.borrow(logits), &ops.borrow(labels)).map(|t| t.item()));
    assert!(r.is_err());
}

fn toggles(norm: NormKind, dropout: f64) -> ModelToggles {
    ModelToggles { norm, dropout }
}

#[test]
fn toggles_and_effective_n() {
    assert_eq!(new::<Categorical>("{}").model(), toggles(NormKind::None, 0.0));
    assert_eq!(new::<BatchNorm>("{}").model(), toggles(NormKind::BatchNorm, 0.0));
    assert_eq!(new::<Frn>("{}").model(), toggles(NormKind::Frn, 0.0));
    assert_eq!(new::<Dropout>("{}").model(), toggles(NormKind::None, 0.1));
    assert_eq!(new::<Dropout>(r#"{"dropout": 0.3}"#).model(), toggles(NormKind::None, 0.3));
    assert_eq!(new::<Augmented>("{}").model(), toggles(NormKind::None, 0.0));
    assert_eq!(new::<Tempered>("{}").model(), toggles(NormKind::None, 0.0));
    assert_eq!(new::<NoisyDirichlet>("{}").model(), toggles(NormKind::None, 0.0));
    // The paper's ResNet-20 setting as one explicit combination.
    let dirty = new::<Categorical>(r#"{"norm": "batchnorm", "augment": true}"#);
    assert_eq!(dirty.model(), toggles(NormKind::BatchNorm, 0.0));
    assert!(dirty.config().augment);
    let aug_frn = new::<Augmented>(r#"{"norm": "frn", "dropout": 0.2}"#);
    assert_eq!(aug_frn.model(), toggles(NormKind::Frn, 0.2));

    // n: examples by default (also when augmenting), k·examples when counting copies.
    assert_eq!(new::<Categorical>("{}").effective_n(50_000), 50_000.0);
    assert_eq!(new::<Augmented>("{}").effective_n(50_000), 50_000.0);
    let counted = new::<Augmented>(r#"{"n_counting": "augmented", "copies": 8}"#);
    assert_eq!(counted.effective_n(50_000), 400_000.0);

    // Settings that would be silently ignored are errors.
    assert!(likelihood_box::<Categorical>(r#"{"n_counting": "augmented"}"#).is_err());
    assert!(likelihood_box::<Augmented>(r#"{"copies": 4}"#).is_err());
    assert!(likelihood_box::<Categorical>(r#"{"norm": "layernorm"}"#).is_err());
    assert!(likelihood_box::<Categorical>(r#"{"dropout": 1.0}"#).is_err());
    assert!(likelihood_box::<Tempered>(r#"{"likelihood_temperature": 0}"#).is_err());
    assert!(likelihood_box::<Dropout>(r#"{"rate": 0.2}"#).is_err());
}

#[test]
fn augmentation_off_returns_none() {
    let mut host = CpuHost::new(1);
    let images = host.insert(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    for mut lik in [new::<Categorical>("{}"), new::<Categorical>(r#"{"augment": false}"#)] {
        let r = host.with_ops(|ops| lik.augment(ops, &ops.borrow(images)).map(|o| o.is_none()));
        assert!(r.unwrap());
    }
}

/// Output image = input shifted by (dy, dx) ∈ [−pad, pad]² (zero fill), optionally mirrored.
fn find_transform(
    src: &[f64],
    out: &[f64],
    c: usize,
    h: usize,
    w: usize,
    pad: i64,
    allow_flip: bool,
) -> Option<(i64, i64, bool)> {
    let flips: &[bool] = if allow_flip { &[false, true] } else { &[false] };
    for &mirror in flips {
        for dy in -pad..=pad {
            for dx in -pad..=pad {
                let ok = (0..c).all(|ch| {
                    (0..h).all(|y| {
                        (0..w).all(|x| {
                            // Crop of the padded image at offset (pad + dy, pad + dx), then flip.
                            let xs = if mirror { w - 1 - x } else { x } as i64;
                            let (sy, sx) = (y as i64 + dy, xs + dx);
                            let want = if sy < 0 || sy >= h as i64 || sx < 0 || sx >= w as i64 {
                                0.0
                            } else {
                                src[ch * h * w + sy as usize * w + sx as usize]
                            };
                            out[ch * h * w + y * w + x] == want
                        })
                    })
                });
                if ok {
                    return Some((dy, dx, mirror));
                }
            }
        }
    }
    None
}

fn augment_check(json: &str, pad: i64, allow_flip: bool) -> Vec<(i64, i64, bool)> {
    let (n, c, h, w) = (200usize, 2usize, 6usize, 5usize);
    // Distinct, non-zero pixel values so that a match is unambiguous.
    let data: Vec<f64> = (0..n * c * h * w).map(|i| 1.0 + i as f64).collect();
    let mut host = CpuHost::new(9);
    let images = host.insert(&[n as i64, c as i64, h as i64, w as i64], &data);
    let mut lik = new::<Augmented>(json);
    let out = host
        .with_ops(|ops| lik.augment(ops, &ops.borrow(images)).map(|o| o.map(|t| t.into_id())))
        .unwrap()
        .expect("augmented returns a new batch");
    assert!(host.take_error().is_none());
    assert_eq!(host.shape_of(out), &[n as i64, c as i64, h as i64, w as i64]);
    let out = host.get(out).to_vec();
    let size = c * h * w;
    (0..n)
        .map(|i| {
            let (src, dst) = (&data[i * size..(i + 1) * size], &out[i * size..(i + 1) * size]);
            find_transform(src, dst, c, h, w, pad, allow_flip)
                .unwrap_or_else(|| panic!("image {i} is not a padded crop/flip of its input"))
        })
        .collect()
}

#[test]
fn augmentation_is_a_crop_and_flip_of_the_same_image() {
    let found = augment_check(r#"{"pad": 2}"#, 2, true);
    let flipped = found.iter().filter(|t| t.2).count();
    let shifted = found.iter().filter(|t| t.0 != 0 || t.1 != 0).count();
    eprintln!("pad 2 + flip: {flipped}/200 flipped, {shifted}/200 shifted");
    // Flip probability ½ over 200 images: far from 0 and 200; offsets vary.
    assert!(flipped > 60 && flipped < 140, "{flipped} flips");
    assert!(shifted > 100, "{shifted} shifted");
    // No flip: never mirrored.
    let found = augment_check(r#"{"pad": 1, "flip": false}"#, 1, false);
    assert!(found.iter().all(|t| !t.2));
    // pad 0, no flip: identity.
    let found = augment_check(r#"{"pad": 0, "flip": false}"#, 0, false);
    assert!(found.iter().all(|&t| t == (0, 0, false)));
}

#[test]
fn augmentation_needs_images() {
    let mut host = CpuHost::new(1);
    let flat = host.insert(&[2, 3], &[0.0; 6]);
    let mut lik = new::<Augmented>("{}");
    let r = host.with_ops(|ops| lik.augment(ops, &ops.borrow(flat)).map(|o| o.is_some()));
    assert!(r.is_err());
}

#[test]
fn every_preset_is_exported_with_its_params() {
    for (name, json) in [
        ("categorical", Categorical::params()),
        ("batchnorm", BatchNorm::params()),
        ("frn", Frn::params()),
        ("dropout", Dropout::params()),
        ("augmented", Augmented::params()),
        ("tempered", Tempered::params()),
        ("noisy-dirichlet", NoisyDirichlet::params()),
    ] {
        let names: Vec<_> = json.iter().map(|s| s.name).collect();
        for p in ["norm", "dropout", "augment", "pad", "flip", "n_counting", "copies", "likelihood_temperature"] {
            assert!(names.contains(&p), "{name} lacks {p}");
        }
        assert!(json.iter().all(|s| !s.doc.is_empty()));
    }
}

#[test]
fn default_padding_follows_the_image_size() {
    // The reference's 4 px for 32 px CIFAR images, scaled to the smaller side, at least 1 px.
    assert_eq!(new::<Augmented>("{}").config().pad, AUTO_PAD);
    for (h, w, pad) in [(32, 32, 4), (28, 28, 4), (8, 8, 1), (6, 5, 1), (16, 64, 2), (3, 3, 1)] {
        assert_eq!(pad_for(AUTO_PAD, h, w), Ok(pad), "{h}x{w}");
    }
    // An explicit pad is kept while it leaves the image inside its frame, refused with a hint
    // at half the smaller side or more (pad 4 on 8x8 digits shifted them out of view).
    assert_eq!(pad_for(4, 32, 32), Ok(4));
    assert_eq!(pad_for(0, 8, 8), Ok(0));
    assert_eq!(pad_for(3, 8, 8), Ok(3));
    let err = pad_for(4, 8, 8).unwrap_err();
    assert!(err.contains("pad 4") && err.contains("8x8") && err.contains("pad < 4") && err.contains("1 px"), "{err}");
    assert!(pad_for(-2, 8, 8).is_err());
}

#[test]
fn default_augmentation_of_8px_images_shifts_by_at_most_one_pixel() {
    // 8x8 images with the default pad: every output is its input shifted by at most 1 px.
    let (n, c, h, w) = (200usize, 1usize, 8usize, 8usize);
    let data: Vec<f64> = (0..n * c * h * w).map(|i| 1.0 + i as f64).collect();
    let mut host = CpuHost::new(5);
    let images = host.insert(&[n as i64, c as i64, h as i64, w as i64], &data);
    let mut lik = new::<Augmented>("{}");
    let out = host
        .with_ops(|ops| lik.augment(ops, &ops.borrow(images)).map(|o| o.map(|t| t.into_id())))
        .unwrap()
        .expect("augmented returns a new batch");
    let out = host.get(out).to_vec();
    let size = c * h * w;
    let mut shifted = 0;
    for i in 0..n {
        let (src, dst) = (&data[i * size..(i + 1) * size], &out[i * size..(i + 1) * size]);
        let t = find_transform(src, dst, c, h, w, 1, true).unwrap_or_else(|| panic!("image {i}: not within 1 px"));
        shifted += usize::from(t.0 != 0 || t.1 != 0);
    }
    // Offsets uniform on {-1, 0, 1}²: 8/9 of 200 images shifted (SD 4.4).
    assert!(shifted > 150, "{shifted} of {n} shifted");
    // An explicit pad of half the side is refused at the first batch, with the hint.
    let mut lik = new::<Augmented>(r#"{"pad": 4}"#);
    let r = host.with_ops(|ops| lik.augment(ops, &ops.borrow(images)).map(|o| o.is_some()));
    assert!(r.unwrap_err().contains("leave pad unset"));
}
