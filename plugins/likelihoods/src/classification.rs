//! The one classification likelihood behind every preset (see the crate docs for the math and
//! the parameters).

use std::marker::PhantomData;

use ablate_sdk::prelude::*;

use crate::noisy_dirichlet;

/// The defaults a named preset gives the shared parameters.
pub trait Preset: 'static {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const NORM: &'static str = "none";
    const DROPOUT: f64 = 0.0;
    const AUGMENT: bool = false;
    const LIKELIHOOD_TEMPERATURE: f64 = 1.0;
    /// Noisy Dirichlet NLL instead of the softmax NLL (adds the `dirichlet_noise` parameter).
    const DIRICHLET: bool = false;
}

/// How the effective n is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NCounting {
    /// n = number of training examples (the reference).
    Examples,
    /// n = copies · examples.
    Augmented,
}

/// `pad` = −1: the padding follows the image size ([`pad_for`]).
pub const AUTO_PAD: i64 = -1;

/// The padding of augmentation for images of `height` × `width`: `pad` as given, or for
/// [`AUTO_PAD`] the reference's 4 px for 32 px images scaled to the smaller side
/// (round(side/8), at least 1). A pad of half the smaller side or more shifts the image out of
/// its own frame and is refused with a hint.
pub fn pad_for(pad: i64, height: i64, width: i64) -> Result<i64, String> {
    let side = height.min(width);
    if pad == AUTO_PAD {
        return Ok(((side as f64 / 8.0).round() as i64).max(1));
    }
    if pad < 0 {
        return Err(format!("pad must be >= 0 or -1 (scale with the image), got {pad}"));
    }
    if 2 * pad >= side && pad > 0 {
        return Err(format!(
            "pad {pad} px shifts {height}x{width} images by up to half their size or more, which leaves \
             little to learn; use pad < {} or leave pad unset (-1: {} px for this size)",
            (side + 1) / 2,
            ((side as f64 / 8.0).round() as i64).max(1)
        ));
    }
    Ok(pad)
}

/// Resolved parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub norm: NormKind,
    pub dropout: f64,
    pub augment: bool,
    pub pad: i64,
    pub flip: bool,
    pub n_counting: NCounting,
    pub copies: u64,
    pub likelihood_temperature: f64,
    /// α_ε of the noisy Dirichlet likelihood; `None` = softmax NLL.
    pub dirichlet_noise: Option<f64>,
}

impl Config {
    pub fn specs<P: Preset>() -> Vec<ParamSpec> {
        let mut specs = vec![
            ParamSpec::string(
                "norm",
                P::NORM,
                &["none", "batchnorm", "frn"],
                "normalisation layers of the host model: none, batchnorm, or frn (filter \
                 response normalisation with TLU)",
            ),
            ParamSpec::float("dropout", P::DROPOUT, "dropout rate of the host model (0 = none)").range(0.0, 0.95),
            ParamSpec::bool(
                "augment",
                P::AUGMENT,
                "augment training batches: random crop of the zero-padded image + optional flip",
            ),
            ParamSpec::int(
                "pad",
                AUTO_PAD,
                "zero padding in pixels before the random crop; -1 (default) scales with the \
                 images: round(side/8), at least 1 (4 px for 32 px images, the reference's \
                 CIFAR setting; 4 for 28 px; 1 for 8 px)",
            )
            .range(AUTO_PAD as f64, 64.0),
            ParamSpec::bool("flip", true, "random horizontal flip (probability ½) when augmenting"),
            ParamSpec::string(
                "n_counting",
                "examples",
                &["examples", "augmented"],
                "effective n under augmentation: examples (n = training examples, the \
                 reference) or augmented (n = copies × examples; needs augment = true)",
            ),
            ParamSpec::int("copies", 1, "k augmented copies counted per example when n_counting = augmented")
                .range(1.0, 1e6),
            ParamSpec::float(
                "likelihood_temperature",
                P::LIKELIHOOD_TEMPERATURE,
                "likelihood-only temperature T_lik: the NLL is divided by T_lik (distinct from \
                 the posterior temperature, which tempers prior and likelihood together)",
            )
            .at_least(1e-6),
        ];
        if P::DIRICHLET {
            specs.push(
                ParamSpec::float(
                    "dirichlet_noise",
                    0.01,
                    "α_ε added to the one-hot targets of the noisy Dirichlet model (Kapoor et \
                     al. 2022 sweep 1e-6 to 1e-2)",
                )
                .range(1e-12, 10.0),
            );
        }
        specs
    }

    pub fn from_params<P: Preset>(p: &Params) -> Result<Self, String> {
        let norm = match p.str("norm") {
            "none" => NormKind::None,
            "batchnorm" => NormKind::BatchNorm,
            "frn" => NormKind::Frn,
            other => return Err(format!("unknown norm `{other}`")),
        };
        let augment = p.bool("augment");
        let n_counting = match p.str("n_counting") {
            "examples" => NCounting::Examples,
            "augmented" => NCounting::Augmented,
            other => return Err(format!("unknown n_counting `{other}`")),
        };
        let copies = p.i64("copies").max(1) as u64;
        if n_counting == NCounting::Augmented && !augment {
            return Err("n_counting = augmented needs augment = true".to_owned());
        }
        if copies != 1 && n_counting != NCounting::Augmented {
            return Err(format!("copies = {copies} is only used with n_counting = augmented"));
        }
        Ok(Self {
            norm,
            dropout: p.f64("dropout"),
            augment,
            pad: p.i64("pad"),
            flip: p.bool("flip"),
            n_counting,
            copies,
            likelihood_temperature: p.f64("likelihood_temperature"),
            dirichlet_noise: if P::DIRICHLET { Some(p.f64("dirichlet_noise")) } else { None },
        })
    }
}

/// The classification likelihood with the defaults of preset `P`.
pub struct Classification<P> {
    config: Config,
    _preset: PhantomData<fn() -> P>,
}

impl<P> Classification<P> {
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Check logits (m, C) and labels (m); returns (m, C).
fn batch_shape(logits: &Tensor, labels: &Tensor) -> Result<(i64, i64), String> {
    let ls = logits.shape();
    let ys = labels.shape();
    match (ls.as_slice(), ys.as_slice()) {
        ([m, c], [my]) if m == my && *m > 0 && *c > 0 => Ok((*m, *c)),
        _ => Err(format!("need logits (m, C) and labels (m) with m, C > 0, got {ls:?} and {ys:?}")),
    }
}

impl<P: Preset> Factory for Classification<P> {
    const NAME: &'static str = P::NAME;
    const DESCRIPTION: &'static str = P::DESCRIPTION;

    fn params() -> Vec<ParamSpec> {
        Config::specs::<P>()
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { config: Config::from_params::<P>(p)?, _preset: PhantomData })
    }
}

impl<P: Preset> Likelihood for Classification<P> {
    fn model(&self) -> ModelToggles {
        ModelToggles { norm: self.config.norm, dropout: self.config.dropout }
    }

    fn effective_n(&self, examples: u64) -> f64 {
        match self.config.n_counting {
            NCounting::Examples => examples as f64,
            NCounting::Augmented => (self.config.copies * examples) as f64,
        }
    }

    fn augment<'o>(&mut self, ops: Ops<'o>, images: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.config.augment {
            return Ok(None);
        }
        let shape = images.shape();
        if shape.len() != 4 {
            return Err(format!("augmentation needs images (N, C, H, W), got shape {shape:?}"));
        }
        let pad = pad_for(self.config.pad, shape[2], shape[3])?;
        Ok(Some(ops.augment_crop_flip(images, pad, self.config.flip)))
    }

    fn nll<'o>(&self, ops: Ops<'o>, logits: &Tensor<'o>, labels: &Tensor<'o>) -> Result<Tensor<'o>, String> {
        let (m, c) = batch_shape(logits, labels)?;
        let t = self.config.likelihood_temperature;
        match self.config.dirichlet_noise {
            None => Ok(logits.log_softmax(1).gather_rows(labels).mean().affine(-1.0 / t, 0.0)),
            Some(noise) => {
                let targets = noisy_dirichlet::Targets::new(noise, c);
                let sum = targets.weighted_square_sum(ops, logits, labels, c);
                Ok(sum.affine(1.0 / (m as f64 * t), targets.log_norm / t))
            }
        }
    }
}
