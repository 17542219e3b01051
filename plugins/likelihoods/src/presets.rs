//! The named presets of [`Classification`]: same parameters, different defaults.

use crate::classification::{Classification, Preset};

/// `categorical`: the clean likelihood (no normalisation, no dropout, no augmentation,
/// n = examples, T_lik = 1): softmax cross-entropy averaged over the batch.
pub struct CategoricalPreset;
impl Preset for CategoricalPreset {
    const NAME: &'static str = "categorical";
    const DESCRIPTION: &'static str = "softmax likelihood; clean by default (no norm, no dropout, no augmentation)";
}
pub type Categorical = Classification<CategoricalPreset>;

/// `batchnorm`: categorical with batch normalisation in the model (the reference's ResNet-20;
/// the likelihood of one example then depends on the rest of its minibatch).
pub struct BatchNormPreset;
impl Preset for BatchNormPreset {
    const NAME: &'static str = "batchnorm";
    const DESCRIPTION: &'static str = "softmax likelihood, model with batch normalisation";
    const NORM: &'static str = "batchnorm";
}
pub type BatchNorm = Classification<BatchNormPreset>;

/// `frn`: categorical with filter response normalisation + TLU (per-example, so the likelihood
/// factorises over examples; the reference's `--resnet_use_frn`).
pub struct FrnPreset;
impl Preset for FrnPreset {
    const NAME: &'static str = "frn";
    const DESCRIPTION: &'static str = "softmax likelihood, model with FRN + TLU normalisation";
    const NORM: &'static str = "frn";
}
pub type Frn = Classification<FrnPreset>;

/// `dropout`: categorical with dropout (rate `dropout`, default 0.1) in the host model.
pub struct DropoutPreset;
impl Preset for DropoutPreset {
    const NAME: &'static str = "dropout";
    const DESCRIPTION: &'static str = "softmax likelihood, model with dropout (rate `dropout`)";
    const DROPOUT: f64 = 0.1;
}
pub type Dropout = Classification<DropoutPreset>;

/// `augmented`: categorical with data augmentation (random crop after `pad` = 4 px zero
/// padding, random horizontal flip), n counted as examples unless `n_counting = augmented`.
pub struct AugmentedPreset;
impl Preset for AugmentedPreset {
    const NAME: &'static str = "augmented";
    const DESCRIPTION: &'static str = "softmax likelihood on augmented batches (pad-and-crop + flip)";
    const AUGMENT: bool = true;
}
pub type Augmented = Classification<AugmentedPreset>;

/// `tempered`: likelihood-only tempering, NLL / T_lik with T_lik = `likelihood_temperature`
/// (default 1 = Bayes; sweep it). With U = n·NLL/T_lik − log p(θ), the target is
/// p(D|θ)^(1/T_lik) · p(θ), which differs from the cold posterior
/// (p(D|θ) p(θ))^(1/T) of the sampler's temperature T: the prior is not tempered.
///
/// For a Gaussian prior N(0, σ² I) the two are related exactly: since N(θ; 0, σ²)^(1/T) ∝
/// N(θ; 0, Tσ²),
/// ```text
/// cold posterior (T, prior variance σ²)  ≡  tempered likelihood (T_lik = T, prior variance T·σ²)
/// tempered likelihood (T_lik, prior σ²)  ≡  cold posterior (T = T_lik, prior variance σ²/T_lik)
/// ```
/// i.e. a cold posterior equals likelihood-only tempering with the prior variance multiplied by
/// T (for T < 1: a narrower prior). Both can be combined: the posterior temperature T still
/// scales the injected noise.
pub struct TemperedPreset;
impl Preset for TemperedPreset {
    const NAME: &'static str = "tempered";
    const DESCRIPTION: &'static str =
        "softmax likelihood tempered alone: NLL / likelihood_temperature (prior untempered)";
}
pub type Tempered = Classification<TemperedPreset>;

/// `noisy-dirichlet`: the noisy Dirichlet likelihood of Kapoor et al. 2022 (see
/// [`crate::noisy_dirichlet`]), with the `dirichlet_noise` parameter α_ε (default 0.01).
pub struct NoisyDirichletPreset;
impl Preset for NoisyDirichletPreset {
    const NAME: &'static str = "noisy-dirichlet";
    const DESCRIPTION: &'static str =
        "noisy Dirichlet likelihood (Kapoor et al. 2022): Gaussian regression of the logits";
    const DIRICHLET: bool = true;
}
pub type NoisyDirichlet = Classification<NoisyDirichletPreset>;
