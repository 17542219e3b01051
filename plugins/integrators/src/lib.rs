//! # ablate-plugin-integrators: the built-in SG-MCMC integrators
//!
//! Discretisations of the Langevin SDE dθ = M⁻¹m dt, dm = −∇U dt − γm dt + sqrt(2γT)M^{1/2}dW
//! (and its overdamped and Metropolised relatives), in the deep-learning parameterisation of
//! the reference code (`google-research/cold_posterior_bnn/core/sgmcmc.py`): learning rate ℓ,
//! momentum decay β, training-set size n, and the gradient g = ∇G̃ of the per-example mean
//! loss (∇U = n·g). Temperature T multiplies only the injected noise, so every method targets
//! exp(−U/T). Each integrator applies the cyclical timestep factor C to its SDE step h with the
//! friction γ fixed (the reference's `dynamics_parameters`); the formulas are in each module.
//!
//! | name | module | parameters |
//! |---|---|---|
//! | `sym-euler` (default) | [`sym_euler`] | `momentum_init` |
//! | `sgld` | [`sgld`] | — |
//! | `baoab` | [`baoab`] | — |
//! | `obabo` | [`obabo`] | `metropolis` |
//! | `bbk` | [`bbk`] | — |
//! | `spv` | [`spv`] | — |
//! | `msgnht` | [`msgnht`] | — |
//! | `hmc` | [`hmc`] | `leapfrog_steps` |

pub mod baoab;
pub mod bbk;
mod common;
pub mod hmc;
pub mod msgnht;
pub mod obabo;
pub mod sgld;
pub mod spv;
pub mod sym_euler;

pub use baoab::Baoab;
pub use bbk::Bbk;
pub use hmc::Hmc;
pub use msgnht::MultivariateNoseHoover;
pub use obabo::Obabo;
pub use sgld::Sgld;
pub use spv::StochasticPositionVerlet;
pub use sym_euler::NaiveSymplecticEulerMCMC;

ablate_sdk::export_plugin! {
    priors: [],
    likelihoods: [],
    integrators: [
        NaiveSymplecticEulerMCMC,
        Sgld,
        Baoab,
        Obabo,
        Bbk,
        StochasticPositionVerlet,
        MultivariateNoseHoover,
        Hmc,
    ],
    noise: [],
}
