//! # Built-in likelihoods of ablate (the "dirty likelihood" toggles)
//!
//! A likelihood plugin decides four things: what the host model contains
//! ([`ablate_sdk::ModelToggles`]: batch norm / FRN / none, dropout rate), how a training batch is transformed
//! (augmentation), the mean negative log-likelihood of a batch, and the effective training-set
//! size n that enters U(θ) = n·(mean NLL) − log p(θ).
//!
//! **Design: one likelihood, several presets.** Every name below is the same
//! [`Classification`] likelihood with the same parameters; the names only choose the defaults.
//! A grid can therefore either name a preset (`"batchnorm"`, `"augmented"`, ...) or combine
//! toggles explicitly (`{"name": "categorical", "params": {"norm": "batchnorm", "augment": true}}`
//! is the paper's ResNet-20 setting: BN + augmentation).
//!
//! | name | defaults that differ from `categorical` |
//! |---|---|
//! | `categorical` | — (clean: no norm, no dropout, no augmentation, n = examples, T_lik = 1) |
//! | `batchnorm` | `norm = "batchnorm"` |
//! | `frn` | `norm = "frn"` (filter response normalisation + TLU) |
//! | `dropout` | `dropout = 0.1` |
//! | `augmented` | `augment = true` (crop with `pad` zero pixels, scaled to the image, + horizontal `flip`) |
//! | `tempered` | — (`likelihood_temperature` is its sweep axis; see [`presets::TemperedPreset`]) |
//! | `noisy-dirichlet` | the noisy Dirichlet NLL of Kapoor et al. 2022 instead of the softmax NLL |
//!
//! `curated` (its own type, [`Curated`], parameter `annotators` = S ≥ 1 only) is Aitchison's
//! (2021) dataset-curation likelihood p(y|x)^S: NLL × S (see [`curated`]).
//!
//! Parameters (all presets):
//!
//! - `norm` ∈ {none, batchnorm, frn}: normalisation layers of the host model.
//! - `dropout` ∈ [0, 0.95]: dropout rate of the host model (0 = none).
//! - `augment` (bool), `pad` (int ≥ 0, or −1 = default: round(side/8) px, at least 1, i.e. the
//!   reference's 4 px for 32 px CIFAR images, 4 px for 28 px, 1 px for 8 px digits; a pad of half
//!   the image side or more is refused), `flip` (bool, default true): random crop of the zero-padded
//!   image back to its size, then a random horizontal flip with probability ½, per example,
//!   through the host's `augment_crop_flip` (the reference: `random_flip_left_right`, pad 4,
//!   `random_crop`).
//! - `n_counting` ∈ {examples, augmented} and `copies` k ≥ 1: how n is counted when augmenting.
//!   `examples` (default, the reference) keeps n = number of training examples. `augmented`
//!   counts each example as k distinct observations, n = k · examples (the "finite orbit" view of
//!   Noci et al. 2021: the likelihood is a product over k augmented copies, i.e. a k-fold
//!   sharper likelihood relative to the prior). `augmented` requires `augment = true`, and
//!   `copies` ≠ 1 requires `n_counting = augmented` (so no setting is silently ignored).
//! - `likelihood_temperature` T_lik > 0 (default 1): likelihood-only tempering, NLL/T_lik.
//!
//! **NLL.** The categorical NLL is the batch mean of the softmax cross-entropy,
//! `−(1/m) Σᵢ log_softmax(fᵢ)[yᵢ] / T_lik` (log_softmax + gather_rows, as Keras'
//! `SparseCategoricalCrossentropy(from_logits=True)`); logits are (m, C), labels are (m)
//! integer classes. See [`noisy_dirichlet`] for the Dirichlet variant.

pub mod classification;
pub mod curated;
pub mod noisy_dirichlet;
pub mod presets;

pub use classification::{pad_for, Classification, Config, NCounting, Preset, AUTO_PAD};
pub use curated::Curated;
pub use presets::{Augmented, BatchNorm, Categorical, Dropout, Frn, NoisyDirichlet, Tempered};

ablate_sdk::export_plugin! {
    priors: [],
    likelihoods: [Categorical, BatchNorm, Frn, Dropout, Augmented, Tempered, NoisyDirichlet, Curated],
    integrators: [],
    noise: [],
}
