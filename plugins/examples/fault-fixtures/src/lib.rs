//! Faulty priors for the host's tests: one panics, one returns NaN, one returns a wrong shape,
//! one returns a handle it released. The host must report each as an error for that use and
//! carry on.

use ablate_sdk::prelude::*;

macro_rules! fixture {
    ($ty:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        pub struct $ty;
        impl Factory for $ty {
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = $doc;
            fn params() -> Vec<ParamSpec> {
                Vec::new()
            }
            fn new(_: &Params) -> Result<Self, String> {
                Ok($ty)
            }
        }
    };
}

fixture!(Panicking, "panicking", "panics inside log_prob");
fixture!(NotANumber, "not-a-number", "returns NaN from log_prob");
fixture!(WrongShape, "wrong-shape", "returns a vector instead of a scalar");
fixture!(Released, "released-handle", "returns a handle it already released");

impl Prior for Panicking {
    fn log_prob<'o>(&self, _: Ops<'o>, _: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        panic!("deliberate panic in a test plugin")
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

impl Prior for NotANumber {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        Ok((&params[0] * 0.0).sum().ln() * 0.0 + f64::NAN)
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

impl Prior for WrongShape {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        Ok(&params[0] * 1.0)
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

impl Prior for Released {
    fn log_prob<'o>(&self, ops: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        let t = params[0].sum();
        let id = t.id();
        drop(t); // released here
        Ok(ops.adopt(id))
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

ablate_sdk::export_plugin! {
    priors: [Panicking, NotANumber, WrongShape, Released],
    likelihoods: [],
    integrators: [],
    noise: [],
}
