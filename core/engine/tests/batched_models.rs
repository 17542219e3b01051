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

#[test]
fn cnn_lstm_on_sequences_and_on_image_rows() {
    let net = || ModelConfig::CnnLstm { filters: 4, kernel: 3, pool: 2, hidden: 5 };
    // MNIST-1D layout (40 steps of 1 feature) and rows of 2-channel 6×5 images (6 steps of 10).
    check(net(), NormKind::None, (1, 40, 1));
    check(net(), NormKind::None, (2, 6, 5));
}

/// The cnn-lstm against the same network written out by hand for one sequence: convolution
/// with same padding, ReLU, max-pooling, the LSTM cell (gates i, f, g, o), dense head.
#[test]
fn cnn_lstm_equals_its_definition() {
    let (f, kern, pool, hd, steps, classes) = (3i64, 3i64, 2i64, 4i64, 6i64, 10i64);
    let cfg =
        ModelConfig::CnnLstm { filters: f as usize, kernel: kern as usize, pool: pool as usize, hidden: hd as usize };
    let model = Model::new(&cfg, ModelToggles { norm: NormKind::None, dropout: 0.0 }, (1, steps, 1), classes).unwrap();
    tch::manual_seed(3);
    let theta = Tensor::randn([model.dim()], (Kind::Double, Device::Cpu)) * 0.5;
    let v = model.views(&theta);
    let names: Vec<String> = model.infos().iter().map(|i| i.name.to_string()).collect();
    let at = |n: &str| v[names.iter().position(|m| m == n).unwrap()].shallow_clone();
    let (cw, cb, wih, whh, bl, hw, hb) = (
        at("conv.weight"),
        at("conv.bias"),
        at("lstm.weight_ih"),
        at("lstm.weight_hh"),
        at("lstm.bias"),
        at("head.weight"),
        at("head.bias"),
    );
    let xs: Vec<f64> = (0..steps).map(|t| ((t * 7 % 5) as f64 - 2.0) / 3.0).collect();
    let get = |t: &Tensor, idx: &[i64]| t.double_value(idx);
    // Convolution (same padding) + ReLU, per filter and step.
    let conv: Vec<Vec<f64>> = (0..f)
        .map(|o| {
            (0..steps)
                .map(|t| {
                    let mut acc = get(&cb, &[o]);
                    for j in 0..kern {
                        let src = t + j - kern / 2;
                        if (0..steps).contains(&src) {
                            acc += get(&cw, &[o, 0, j]) * xs[src as usize];
                        }
                    }
                    acc.max(0.0)
                })
                .collect()
        })
        .collect();
    let pooled: Vec<Vec<f64>> = (0..steps / pool)
        .map(|t| (0..f as usize).map(|o| conv[o][(2 * t) as usize].max(conv[o][(2 * t + 1) as usize])).collect())
        .collect();
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    let (mut h, mut c) = (vec![0.0; hd as usize], vec![0.0; hd as usize]);
    for x_t in &pooled {
        let gate = |r: i64| {
            let mut z = get(&bl, &[r]);
            for (q, xv) in x_t.iter().enumerate() {
                z += get(&wih, &[r, q as i64]) * xv;
            }
            for (q, hv) in h.iter().enumerate() {
                z += get(&whh, &[r, q as i64]) * hv;
            }
            z
        };
        let mut nh = vec![0.0; hd as usize];
        for u in 0..hd {
            let (i, fg, g, o) = (sig(gate(u)), sig(gate(hd + u)), gate(2 * hd + u).tanh(), sig(gate(3 * hd + u)));
            c[u as usize] = fg * c[u as usize] + i * g;
            nh[u as usize] = o * c[u as usize].tanh();
        }
        h = nh;
    }
    let want: Vec<f64> = (0..classes)
        .map(|k| get(&hb, &[k]) + (0..hd).map(|u| get(&hw, &[k, u]) * h[u as usize]).sum::<f64>())
        .collect();
    let x = Tensor::from_slice(&xs).reshape([1, 1, steps, 1]);
    let mut bn = model.new_bn_state(Device::Cpu);
    let got = model.forward(&theta, &x, Mode::Eval, &mut bn).unwrap();
    assert_eq!(got.size(), vec![1, classes]);
    for (k, w) in want.iter().enumerate() {
        let g = got.double_value(&[0, k as i64]);
        assert!((g - w).abs() < 1e-12, "logit {k}: {g} vs {w}");
    }
}
