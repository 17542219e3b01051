//! K chains as one model: for every architecture and normalisation, the batched forward pass
//! (linear layers as `baddbmm`, convolutions grouped by chain) gives each chain the logits, the
//! batch-norm statistics and the gradients it gets alone. Deterministic, so the comparison is
//! to float rounding (the grouped kernels sum in another order).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_engine::model::{Mode, Model};
use ablate_grid::config::{Activation, Init, ModelConfig};
use ablate_sdk::{ModelToggles, NormKind};
use tch::{Device, Kind, Tensor};

const K: i64 = 3;
const B: i64 = 8;

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

fn check(cfg: ModelConfig, norm: NormKind, input: (i64, i64, i64)) {
    let model = Model::new(&cfg, ModelToggles { norm, dropout: 0.0 }, input, 10).unwrap();
    tch::manual_seed(1);
    // Chains differ everywhere, normalisation parameters included.
    let thetas: Vec<Tensor> = (0..K)
        .map(|_| {
            model.init(Init::HeNormal, Device::Cpu).unwrap()
                + Tensor::randn([model.dim()], (Kind::Float, Device::Cpu)) * 0.1
        })
        .collect();
    let stacked = Tensor::stack(&thetas, 0).set_requires_grad(true);
    let (c, h, w) = input;
    let x = Tensor::randn([K, B, c, h, w], (Kind::Float, Device::Cpu));
    let shared = Tensor::randn([B, c, h, w], (Kind::Float, Device::Cpu));
    let leaves: Vec<Tensor> = thetas.iter().map(|t| t.detach().set_requires_grad(true)).collect();

    let mut bn_batched = model.new_bn_state_for(Device::Cpu, K);
    let mut bn_alone: Vec<_> = (0..K).map(|_| model.new_bn_state(Device::Cpu)).collect();
    let what = format!("{cfg:?} {norm:?}");

    // Training mode (batch statistics per chain, running statistics updated), with gradients.
    let batched = model.forward_batched(&model.batched_views(&stacked), &x, Mode::Train, &mut bn_batched).unwrap();
    assert_eq!(batched.size(), vec![K, B, 10], "{what}");
    let weights = Tensor::randn([K, B, 10], (Kind::Float, Device::Cpu));
    let g_batched =
        Tensor::run_backward(&[(&batched * &weights).sum(Kind::Float)], &[&stacked], false, false).remove(0);
    for j in 0..K {
        let alone = model.forward(&leaves[j as usize], &x.get(j), Mode::Train, &mut bn_alone[j as usize]).unwrap();
        let d = max_diff(&alone, &batched.get(j));
        let scale = f64::try_from(alone.abs().max()).unwrap().max(1.0);
        assert!(d < 1e-4 * scale, "{what}: chain {j} train logits differ by {d} (scale {scale})");
        let g =
            Tensor::run_backward(&[(&alone * weights.get(j)).sum(Kind::Float)], &[&leaves[j as usize]], false, false)
                .remove(0);
        let dg = max_diff(&g, &g_batched.get(j));
        let scale = f64::try_from(g.abs().max()).unwrap().max(1.0);
        assert!(dg < 1e-4 * scale, "{what}: chain {j} gradients differ by {dg} (scale {scale})");
    }

    // Inference mode on shared inputs: the running statistics each chain collected above.
    let _guard = tch::no_grad_guard();
    let batched = model.forward_batched(&model.batched_views(&stacked), &shared, Mode::Eval, &mut bn_batched).unwrap();
    for j in 0..K {
        let alone = model.forward(&thetas[j as usize], &shared, Mode::Eval, &mut bn_alone[j as usize]).unwrap();
        let d = max_diff(&alone, &batched.get(j));
        // Untrained deep nets in inference mode (running statistics near their initial values)
        // have large logits: compare relative to their size.
        let scale = f64::try_from(alone.abs().max()).unwrap().max(1.0);
        assert!(d < 1e-4 * scale, "{what}: chain {j} eval logits differ by {d} (scale {scale})");
    }
}

#[test]
fn mlp_plain_and_with_batch_norm() {
    let mlp = || ModelConfig::Mlp { hidden: vec![16, 12], activation: Activation::Relu };
    check(mlp(), NormKind::None, (1, 4, 4));
    check(mlp(), NormKind::BatchNorm, (1, 4, 4));
}

#[test]
fn cnn_plain_batch_norm_and_frn() {
    let cnn = || ModelConfig::Cnn { channels: vec![4, 6], activation: Activation::Relu };
    for norm in [NormKind::None, NormKind::BatchNorm, NormKind::Frn] {
        check(cnn(), norm, (3, 8, 8));
    }
}

#[test]
fn resnet20_with_batch_norm_and_frn() {
    for norm in [NormKind::BatchNorm, NormKind::Frn] {
        check(ModelConfig::Resnet20 { width: 1 }, norm, (3, 8, 8));
    }
}
