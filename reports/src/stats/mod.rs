//! Pure statistics behind the report's reference comparison, convergence diagnostics and OOD
//! scores, each on plain arrays and tested against reference values:
//!
//! - [`predictive`]: agreement and total variation of two predictive distributions, predictive
//!   entropy and max-probability;
//! - [`mcmc`]: split-R-hat and effective sample size across chains (ArviZ's `rhat(method="split")`
//!   and `ess(method="mean")`, i.e. Gelman et al. BDA3 split-R-hat and Geyer's initial monotone
//!   sequence estimator, without rank normalisation);
//! - [`ranking`]: AUROC and AUPRC of scores (scikit-learn's `roc_auc_score` and
//!   `average_precision_score`, ties included).

pub mod mcmc;
pub mod predictive;
pub mod ranking;
