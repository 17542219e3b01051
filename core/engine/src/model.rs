//! Networks over one flat parameter vector.
//!
//! All parameters live in a single 1-D tensor θ (the sampler's state); each forward pass takes
//! per-layer views of it, so autograd returns one flat gradient and an integrator step is a
//! handful of kernels, whatever the depth. Every parameter tensor carries its metadata
//! ([`ParamInfo`]: layer, role, shape, fan-in/out, offset) for priors.
//!
//! Architectures: MLP (depth, width, activation), a small CNN, a CNN-LSTM for sequences (1-D
//! convolution, max-pooling, a hand-written LSTM, dense head), and ResNet-20 v1 as the paper's
//! code builds it (3 stages of 3 basic blocks with 16/32/64 filters; every convolution, the 1×1
//! projection shortcuts included, is followed by its normalisation layer; ReLU after the stem
//! and after each block's first layer; global average pooling, dense head). Normalisation
//! (batch norm / FRN / none) and dropout come from the likelihood plugin's [`ModelToggles`].
//! FRN is the paper's layer: max(γ·x/√(ν²+ε) + β, τ), its threshold τ included, so every FRN
//! layer's τ enters the graph; with FRN the ReLU after each residual addition becomes a TLU
//! max(x, τ) with its own τ, and the other ReLUs stay.
//! Batch-norm running statistics are buffers outside θ ([`BnState`]): each ensemble member is
//! evaluated with its own.

use ablate_grid::config::{Activation, Init, ModelConfig};
use ablate_sdk::{ModelToggles, NormKind, ParamInfo, Role};
use tch::{Device, Kind, Tensor};

use crate::compute::Compute;
use crate::EngineError;

/// Keras BatchNormalization defaults: momentum 0.99 (PyTorch 0.01), epsilon 1e-3.
const BN_MOMENTUM: f64 = 0.01;
const BN_EPS: f64 = 1e-3;
/// FRN epsilon of the reference (`frn.FRN`).
const FRN_EPS: f64 = 1e-6;

#[derive(Debug, Clone, Copy)]
struct Linear {
    w: usize,
    b: usize,
}

#[derive(Debug, Clone, Copy)]
struct Conv {
    w: usize,
    b: Option<usize>,
    stride: i64,
    pad: i64,
}

#[derive(Debug, Clone, Copy)]
enum Norm {
    None,
    Batch { gamma: usize, beta: usize, slot: usize },
    Frn { gamma: usize, beta: usize, tau: usize },
}

#[derive(Debug, Clone)]
struct Block {
    conv1: Conv,
    norm1: Norm,
    conv2: Conv,
    norm2: Norm,
    /// 1×1 projection and its normalisation (the first block of stages 2 and 3).
    shortcut: Option<(Conv, Norm)>,
    /// TLU threshold after the residual addition (FRN models) instead of ReLU.
    tlu: Option<usize>,
}

/// The cnn-lstm's parameters: 1-D convolution, LSTM (gates i, f, g, o stacked), pooling.
#[derive(Debug, Clone, Copy)]
struct SeqNet {
    conv_w: usize,
    conv_b: usize,
    kernel: i64,
    pool: i64,
    w_ih: usize,
    w_hh: usize,
    b_lstm: usize,
}

#[derive(Debug, Clone)]
enum Arch {
    Mlp { hidden: Vec<(Linear, Norm)>, head: Linear },
    Cnn { convs: Vec<(Conv, Norm)>, head: Linear },
    Resnet { stem: (Conv, Norm), blocks: Vec<Block>, head: Linear },
    CnnLstm { net: SeqNet, head: Linear },
}

/// Batch-norm running statistics (one (mean, var) pair per batch-norm layer).
#[derive(Debug)]
pub struct BnState {
    running: Vec<(Tensor, Tensor)>,
}

impl BnState {
    pub fn copy(&self) -> BnState {
        BnState { running: self.running.iter().map(|(m, v)| (m.copy(), v.copy())).collect() }
    }
}

/// Train (batch statistics, dropout, running-stat updates) or inference mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A network with its parameter layout.
#[derive(Debug)]
pub struct Model {
    arch: Arch,
    activation: Activation,
    dropout: f64,
    infos: Vec<ParamInfo>,
    bn_channels: Vec<i64>,
    /// Per parameter tensor: stacked over K chains it becomes channels of a grouped layout
    /// (convolutions, normalisation) rather than a batch of matrices (linear layers).
    grouped: Vec<bool>,
    dim: i64,
    pub classes: i64,
    /// The arithmetic and layout of the forward pass (default: fp32, plain layout).
    compute: Compute,
}

struct Builder {
    infos: Vec<ParamInfo>,
    bn_channels: Vec<i64>,
    offset: i64,
    norm: NormKind,
}

impl Builder {
    fn param(&mut self, layer: &str, role: Role, name: &str, shape: Vec<i64>, fan_in: i64, fan_out: i64) -> usize {
        let info = ParamInfo::new(&format!("{layer}.{name}"), layer, role, &shape, fan_in, fan_out, self.offset);
        self.offset += info.numel;
        self.infos.push(info);
        self.infos.len() - 1
    }

    fn linear(&mut self, layer: &str, inp: i64, out: i64) -> Linear {
        Linear {
            w: self.param(layer, Role::Weight, "weight", vec![out, inp], inp, out),
            b: self.param(layer, Role::Bias, "bias", vec![out], inp, out),
        }
    }

    fn conv(&mut self, layer: &str, inp: i64, out: i64, k: i64, stride: i64, bias: bool) -> Conv {
        let w = self.param(layer, Role::Weight, "weight", vec![out, inp, k, k], inp * k * k, out * k * k);
        let b = bias.then(|| self.param(layer, Role::Bias, "bias", vec![out], inp * k * k, out * k * k));
        Conv { w, b, stride, pad: k / 2 }
    }

    fn norm(&mut self, layer: &str, channels: i64) -> Norm {
        match self.norm {
            NormKind::None => Norm::None,
            NormKind::BatchNorm => {
                let gamma = self.param(layer, Role::Norm, "gamma", vec![channels], channels, channels);
                let beta = self.param(layer, Role::Norm, "beta", vec![channels], channels, channels);
                self.bn_channels.push(channels);
                Norm::Batch { gamma, beta, slot: self.bn_channels.len() - 1 }
            }
            NormKind::Frn => Norm::Frn {
                gamma: self.param(layer, Role::Norm, "gamma", vec![channels], channels, channels),
                beta: self.param(layer, Role::Norm, "beta", vec![channels], channels, channels),
                tau: self.param(layer, Role::Norm, "tau", vec![channels], channels, channels),
            },
        }
    }
}

impl Model {
    /// Build the network for images of shape (channels, height, width) and `classes` outputs.
    pub fn new(
        cfg: &ModelConfig,
        toggles: ModelToggles,
        input: (i64, i64, i64),
        classes: i64,
    ) -> Result<Model, EngineError> {
        let (c, h, w) = input;
        if !(0.0..1.0).contains(&toggles.dropout) {
            return Err(EngineError::Config(format!(
                "dropout rate {} from the likelihood plugin must be in [0, 1)",
                toggles.dropout
            )));
        }
        let mut b = Builder { infos: Vec::new(), bn_channels: Vec::new(), offset: 0, norm: toggles.norm };
        let (arch, activation) = match cfg {
            ModelConfig::Mlp { hidden, activation } => {
                if toggles.norm == NormKind::Frn {
                    return Err(EngineError::Config(
                        "FRN normalises over spatial positions and needs a convolutional model (cnn or \
                         resnet20); use batch norm or no normalisation with an MLP"
                            .into(),
                    ));
                }
                let mut inp = c * h * w;
                let mut layers = Vec::new();
                for (i, &width) in hidden.iter().enumerate() {
                    let name = format!("dense{i}");
                    let lin = b.linear(&name, inp, width as i64);
                    layers.push((lin, b.norm(&format!("{name}_norm"), width as i64)));
                    inp = width as i64;
                }
                (Arch::Mlp { hidden: layers, head: b.linear("head", inp, classes) }, *activation)
            }
            ModelConfig::Cnn { channels, activation } => {
                let (mut inp, mut hh, mut ww) = (c, h, w);
                let mut convs = Vec::new();
                for (i, &ch) in channels.iter().enumerate() {
                    let name = format!("conv{i}");
                    let conv = b.conv(&name, inp, ch as i64, 3, 1, true);
                    convs.push((conv, b.norm(&format!("{name}_norm"), ch as i64)));
                    inp = ch as i64;
                    hh /= 2;
                    ww /= 2;
                }
                if hh < 1 || ww < 1 {
                    return Err(EngineError::Config(format!(
                        "cnn with {} pooling stages shrinks {h}x{w} images below 1x1; use fewer channels entries",
                        channels.len()
                    )));
                }
                (Arch::Cnn { convs, head: b.linear("head", inp * hh * ww, classes) }, *activation)
            }
            ModelConfig::CnnLstm { filters, kernel, pool, hidden } => {
                cnn_lstm_arch(&mut b, (filters, kernel, pool, hidden), toggles, input, classes)?
            }
            ModelConfig::Resnet20 { width } => resnet20_arch(&mut b, *width, toggles, c, classes),
        };
        let grouped = grouped_params(&arch, b.infos.len());
        Ok(Model {
            arch,
            activation,
            dropout: toggles.dropout,
            dim: b.offset,
            infos: b.infos,
            bn_channels: b.bn_channels,
            grouped,
            classes,
            compute: Compute::default(),
        })
    }

    /// Run forward passes in this arithmetic and layout.
    pub fn set_compute(&mut self, compute: Compute) {
        self.compute = compute;
    }

    /// The arithmetic and layout of the forward pass.
    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Whether the network has convolutions over images (the layers a memory layout changes).
    pub fn is_convolutional(&self) -> bool {
        matches!(self.arch, Arch::Cnn { .. } | Arch::Resnet { .. })
    }

    /// Whether the network reads its inputs as sequences (cnn-lstm), not images.
    pub fn is_sequence(&self) -> bool {
        matches!(self.arch, Arch::CnnLstm { .. })
    }

    /// Number of scalar parameters d.
    pub fn dim(&self) -> i64 {
        self.dim
    }

    pub fn infos(&self) -> &[ParamInfo] {
        &self.infos
    }

    /// Fresh batch-norm statistics (mean 0, variance 1).
    pub fn new_bn_state(&self, device: Device) -> BnState {
        self.new_bn_state_for(device, 1)
    }

    /// Fresh batch-norm statistics for K batched chains (K·C channels per layer).
    pub fn new_bn_state_for(&self, device: Device, chains: i64) -> BnState {
        let opts = (Kind::Float, device);
        BnState {
            running: self
                .bn_channels
                .iter()
                .map(|&c| (Tensor::zeros([chains * c], opts), Tensor::ones([chains * c], opts)))
                .collect(),
        }
    }

    /// Initial θ: Glorot-uniform (Keras default) or He-normal kernels, zero biases (the LSTM's
    /// forget gate: 1, as Keras), norm scales 1,
    /// shifts and FRN/TLU thresholds 0. Draws from libtorch's (seeded) generator.
    pub fn init(&self, init: Init, device: Device) -> Result<Tensor, tch::TchError> {
        let parts = self
            .infos
            .iter()
            .map(|info| {
                let n = info.numel;
                let opts = (Kind::Float, device);
                match info.role {
                    Role::Weight => match init {
                        Init::GlorotUniform => {
                            let limit = (6.0 / (info.fan_in + info.fan_out) as f64).sqrt();
                            Tensor::f_rand([n], opts)?.f_mul_scalar(2.0 * limit)?.f_sub_scalar(limit)
                        }
                        Init::HeNormal => Tensor::f_randn([n], opts)?.f_mul_scalar((2.0 / info.fan_in as f64).sqrt()),
                    },
                    // Keras' `unit_forget_bias`: the LSTM's forget gate (the second quarter of
                    // its gates) starts at bias 1, so early steps are not forgotten at once.
                    Role::Bias if info.name == "lstm.bias" => {
                        let q = n / 4;
                        Tensor::f_cat(
                            &[
                                Tensor::f_zeros([q], opts)?,
                                Tensor::f_ones([q], opts)?,
                                Tensor::f_zeros([n - 2 * q], opts)?,
                            ],
                            0,
                        )
                    }
                    Role::Bias => Tensor::f_zeros([n], opts),
                    Role::Norm if info.name.ends_with(".gamma") => Tensor::f_ones([n], opts),
                    Role::Norm => Tensor::f_zeros([n], opts),
                }
            })
            .collect::<Result<Vec<Tensor>, tch::TchError>>()?;
        Tensor::f_cat(&parts, 0)
    }

    /// Views of θ, one per parameter tensor, shaped as the layers expect.
    pub fn views(&self, theta: &Tensor) -> Vec<Tensor> {
        self.infos.iter().map(|i| theta.narrow(0, i.offset, i.numel).view(i.shape.as_slice())).collect()
    }

    /// Views of K flat parameter vectors stacked as θ [K, d], one per tensor, shaped [K, ...].
    pub fn batched_views(&self, theta: &Tensor) -> Vec<Tensor> {
        let k = theta.size()[0];
        self.infos
            .iter()
            .map(|i| {
                let shape: Vec<i64> = std::iter::once(k).chain(i.shape.iter().copied()).collect();
                theta.narrow(1, i.offset, i.numel).view(shape.as_slice())
            })
            .collect()
    }

    /// Logits [K, B, classes] of K batched chains from per-tensor parameters `v` shaped
    /// [K, ...] (as [`Model::batched_views`] returns them, or leaves aliasing them): `x` is
    /// [K, B, C, H, W] (one batch per chain) or [B, C, H, W] (the same inputs for every chain).
    /// Linear layers run as `baddbmm`; convolutions as one convolution with K groups over a
    /// [B, K·C, H, W] layout, where batch norm, FRN, pooling and dropout act per channel and so
    /// per chain; `bn` must come from [`Model::new_bn_state_for`] with K chains.
    pub fn forward_batched(
        &self,
        v: &[Tensor],
        x: &Tensor,
        mode: Mode,
        bn: &mut BnState,
    ) -> Result<Tensor, EngineError> {
        let k = v.first().map_or(1, |t| t.size()[0]);
        let grouped: Vec<Tensor> = v
            .iter()
            .zip(&self.grouped)
            .map(|(t, &g)| {
                if g {
                    let mut shape = t.size();
                    let first = shape.remove(0);
                    shape[0] *= first;
                    t.reshape(shape.as_slice())
                } else {
                    t.shallow_clone()
                }
            })
            .collect();
        self.forward_impl(&grouped, x, mode, bn, k)
    }

    /// Logits for a batch of images (N, C, H, W).
    pub fn forward(&self, theta: &Tensor, x: &Tensor, mode: Mode, bn: &mut BnState) -> Result<Tensor, EngineError> {
        self.forward_views(&self.views(theta), x, mode, bn)
    }

    /// Logits from per-tensor parameters `v` (as [`Model::views`] returns them, or leaves that
    /// alias the flat vector).
    pub fn forward_views(&self, v: &[Tensor], x: &Tensor, mode: Mode, bn: &mut BnState) -> Result<Tensor, EngineError> {
        self.forward_impl(v, x, mode, bn, 1)
    }

    /// The forward pass of one chain (`chains` = 1: plain layouts) or of K chains in the grouped
    /// layout of [`Model::forward_batched`] (`v` already regrouped), in the arithmetic and layout
    /// of [`Model::compute`]; the logits come out in the parameters' precision (fp32) in every
    /// mode.
    fn forward_impl(
        &self,
        v: &[Tensor],
        x: &Tensor,
        mode: Mode,
        bn: &mut BnState,
        chains: i64,
    ) -> Result<Tensor, EngineError> {
        let pass = Pass {
            v,
            k: chains,
            train: mode == Mode::Train,
            activation: self.activation,
            dropout: self.dropout,
            compute: self.compute,
        };
        let scope = self.compute.scope(x.device())?;
        let out = match &self.arch {
            Arch::Mlp { hidden, head } => pass.mlp(x, hidden, head, bn)?,
            Arch::Cnn { convs, head } => pass.cnn(x, convs, head, bn)?,
            Arch::CnnLstm { net, head } => {
                let h = pass.dropout(sequence_forward(net, v, x, chains)?)?;
                if chains == 1 {
                    pass.linear(&h.f_squeeze_dim(0)?, head)?
                } else {
                    pass.linear(&h, head)?
                }
            }
            Arch::Resnet { stem, blocks, head } => pass.resnet(x, stem, blocks, head, bn)?,
        };
        drop(scope);
        // Autocast's bf16 logits leave as fp32; fp32 (or float64 in tests) stays as it is.
        if matches!(out.kind(), Kind::BFloat16 | Kind::Half) {
            Ok(out.f_to_kind(Kind::Float)?)
        } else {
            Ok(out)
        }
    }
}

/// One forward pass: the parameter views, the number of chains K and the mode, with the layer
/// operations every architecture shares.
struct Pass<'a> {
    v: &'a [Tensor],
    k: i64,
    train: bool,
    activation: Activation,
    dropout: f64,
    compute: Compute,
}

impl Pass<'_> {
    /// Linear layer of one chain, or of K chains (weights [K, out, in], biases [K, out]) on
    /// inputs [K, B, in] or shared [B, in].
    fn linear(&self, h: &Tensor, lin: &Linear) -> Result<Tensor, tch::TchError> {
        let (w, b) = (&self.v[lin.w], &self.v[lin.b]);
        if self.k == 1 {
            h.f_linear(w, Some(b))
        } else if h.dim() == 3 {
            b.f_unsqueeze(1)?.f_baddbmm(h, &w.f_transpose(1, 2)?, 1.0, 1.0)
        } else {
            h.f_matmul(&w.f_transpose(1, 2)?)?.f_add(&b.f_unsqueeze(1)?)
        }
    }

    /// Images of K chains into the grouped layout [B, K·C, H, W], in the memory layout of the
    /// compute mode (channels-last or plain).
    fn to_grouped(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        let k = self.k;
        let grouped = if k == 1 {
            x.shallow_clone()
        } else if x.dim() == 5 {
            let s = x.size();
            x.f_transpose(0, 1)?.f_reshape([s[1], k * s[2], s[3], s[4]].as_slice())?
        } else {
            x.f_repeat([1, k, 1, 1].as_slice())?
        };
        self.compute.layout(&grouped)
    }

    /// Per-chain features [B, K·F] (grouped) into [K, B, F] for the linear head.
    fn to_chains(&self, h: Tensor) -> Result<Tensor, tch::TchError> {
        if self.k == 1 {
            Ok(h)
        } else {
            let b = h.size()[0];
            h.f_reshape([b, self.k, -1].as_slice())?.f_transpose(0, 1)
        }
    }

    fn act(&self, t: Tensor) -> Result<Tensor, tch::TchError> {
        match self.activation {
            Activation::Relu => t.f_relu(),
            Activation::Tanh => t.f_tanh(),
            Activation::Gelu => t.f_gelu("none"),
        }
    }

    fn dropout(&self, t: Tensor) -> Result<Tensor, tch::TchError> {
        if self.dropout > 0.0 {
            t.f_dropout(self.dropout, self.train)
        } else {
            Ok(t)
        }
    }

    fn mlp(
        &self,
        x: &Tensor,
        hidden: &[(Linear, Norm)],
        head: &Linear,
        bn: &mut BnState,
    ) -> Result<Tensor, tch::TchError> {
        let (k, v) = (self.k, self.v);
        let mut h = x.f_flatten(-3, -1)?;
        for (lin, norm) in hidden {
            h = self.linear(&h, lin)?;
            h = match norm {
                // Batch norm of K chains: features of [K, B, F] as K·F channels.
                Norm::Batch { .. } if k > 1 => {
                    let (b, f) = (h.size()[1], h.size()[2]);
                    let flat = h.f_transpose(0, 1)?.f_reshape([b, k * f].as_slice())?;
                    apply_norm(flat, *norm, v, bn, self.train)?.f_reshape([b, k, f].as_slice())?.f_transpose(0, 1)?
                }
                _ => apply_norm(h, *norm, v, bn, self.train)?,
            };
            h = self.dropout(self.act(h)?)?;
        }
        self.linear(&h, head)
    }

    fn cnn(&self, x: &Tensor, convs: &[(Conv, Norm)], head: &Linear, bn: &mut BnState) -> Result<Tensor, EngineError> {
        let mut h = self.to_grouped(x)?;
        for (conv, norm) in convs {
            h = self.act(apply_norm(apply_conv(&h, conv, self.v, self.k)?, *norm, self.v, bn, self.train)?)?;
            h = self.dropout(h.f_max_pool2d(
                [2, 2].as_slice(),
                [2, 2].as_slice(),
                [0, 0].as_slice(),
                [1, 1].as_slice(),
                false,
            )?)?;
        }
        Ok(self.linear(&self.to_chains(h.f_flatten(1, -1)?)?, head)?)
    }

    /// The paper's `resnet_layer`: convolution, normalisation (FRN with its own threshold τ),
    /// then ReLU where the layer has an activation.
    fn resnet_layer(
        &self,
        h: &Tensor,
        conv: &Conv,
        norm: Norm,
        bn: &mut BnState,
        relu: bool,
    ) -> Result<Tensor, tch::TchError> {
        let y = apply_norm(apply_conv(h, conv, self.v, self.k)?, norm, self.v, bn, self.train)?;
        if relu {
            y.f_relu()
        } else {
            Ok(y)
        }
    }

    fn resnet(
        &self,
        x: &Tensor,
        stem: &(Conv, Norm),
        blocks: &[Block],
        head: &Linear,
        bn: &mut BnState,
    ) -> Result<Tensor, EngineError> {
        let x = self.to_grouped(x)?;
        let mut h = self.resnet_layer(&x, &stem.0, stem.1, bn, true)?;
        for blk in blocks {
            let y = self.resnet_layer(&h, &blk.conv1, blk.norm1, bn, true)?;
            let y = self.dropout(self.resnet_layer(&y, &blk.conv2, blk.norm2, bn, false)?)?;
            let short = match &blk.shortcut {
                Some((conv, norm)) => self.resnet_layer(&h, conv, *norm, bn, false)?,
                None => h.shallow_clone(),
            };
            let sum = y.f_add(&short)?;
            h = match blk.tlu {
                Some(tau) => sum.f_maximum(&self.v[tau].f_view([1, -1, 1, 1].as_slice())?)?,
                None => sum.f_relu()?,
            };
        }
        Ok(self.linear(&self.to_chains(h.f_mean_dim([2, 3].as_slice(), false, Kind::Float)?)?, head)?)
    }
}

/// The cnn-lstm up to the LSTM's last hidden state, [K, B, hidden] for K chains (K = 1: the
/// plain layout, weights without a chain dimension). Images [B, C, H, W] (or [K, B, C, H, W])
/// are read as H steps of C·W features; the convolution runs with K groups, the LSTM cell is
/// written out (batched matrix products with per-chain weights; libtorch's fused LSTM takes
/// one set of weights).
fn sequence_forward(net: &SeqNet, v: &[Tensor], x: &Tensor, k: i64) -> Result<Tensor, tch::TchError> {
    // [.., C, H, W] → [.., C·W, H]: features by time.
    let seq = if x.dim() == 5 {
        let s = x.size();
        x.f_permute([1, 0, 2, 4, 3].as_slice())?.f_reshape([s[1], k * s[2] * s[4], s[3]].as_slice())?
    } else {
        let s = x.size();
        let one = x.f_permute([0, 1, 3, 2].as_slice())?.f_reshape([s[0], s[1] * s[3], s[2]].as_slice())?;
        if k == 1 {
            one
        } else {
            one.f_repeat([1, k, 1].as_slice())?
        }
    };
    let h = seq
        .f_conv1d(&v[net.conv_w], Some(&v[net.conv_b]), [1].as_slice(), [net.kernel / 2].as_slice(), [1].as_slice(), k)?
        .f_relu()?
        .f_max_pool1d([net.pool].as_slice(), [net.pool].as_slice(), [0].as_slice(), [1].as_slice(), false)?;
    // [B, K·F, T] → [K, B, T, F].
    let (b, t) = (h.size()[0], h.size()[2]);
    let h = h.f_reshape([b, k, -1, t].as_slice())?.f_permute([1, 0, 3, 2].as_slice())?;
    let chained = |w: &Tensor| if k == 1 { w.unsqueeze(0) } else { w.shallow_clone() };
    let (w_ih, w_hh, bias) = (chained(&v[net.w_ih]), chained(&v[net.w_hh]), chained(&v[net.b_lstm]));
    let gates4 = w_hh.size()[1];
    let hidden = gates4 / 4;
    let f = h.size()[3];
    // Input projections of every step at once: [K, B·T, F] @ [K, F, 4h] + b.
    let xin = h
        .f_reshape([k, b * t, f].as_slice())?
        .f_matmul(&w_ih.f_transpose(1, 2)?)?
        .f_add(&bias.f_unsqueeze(1)?)?
        .f_reshape([k, b, t, gates4].as_slice())?;
    let w_hh_t = w_hh.f_transpose(1, 2)?;
    let opts = (h.kind(), h.device());
    let mut hs = Tensor::f_zeros([k, b, hidden].as_slice(), opts)?;
    let mut cs = Tensor::f_zeros([k, b, hidden].as_slice(), opts)?;
    for step in 0..t {
        let gates = xin.f_select(2, step)?.f_add(&hs.f_matmul(&w_hh_t)?)?;
        let parts = gates.f_chunk(4, -1)?;
        let (i, fg, g, o) = (parts[0].f_sigmoid()?, parts[1].f_sigmoid()?, parts[2].f_tanh()?, parts[3].f_sigmoid()?);
        cs = fg.f_mul(&cs)?.f_add(&i.f_mul(&g)?)?;
        hs = o.f_mul(&cs.f_tanh()?)?;
    }
    Ok(hs)
}

/// Convolution; `groups` = K chains in the grouped layout (weights [K·out, in, kh, kw]).
fn apply_conv(x: &Tensor, c: &Conv, v: &[Tensor], groups: i64) -> Result<Tensor, tch::TchError> {
    x.f_conv2d(
        &v[c.w],
        c.b.map(|b| &v[b]),
        [c.stride, c.stride].as_slice(),
        [c.pad, c.pad].as_slice(),
        [1, 1].as_slice(),
        groups,
    )
}

fn norm_params(n: Norm) -> Vec<usize> {
    match n {
        Norm::None => Vec::new(),
        Norm::Batch { gamma, beta, .. } => vec![gamma, beta],
        Norm::Frn { gamma, beta, tau } => vec![gamma, beta, tau],
    }
}

/// Which parameter tensors become channels of the grouped layout when K chains are batched:
/// convolution kernels and biases, normalisation parameters, TLU thresholds.
fn grouped_params(arch: &Arch, count: usize) -> Vec<bool> {
    let mut g = vec![false; count];
    let mut mark = |i: usize| g[i] = true;
    let conv = |c: &Conv, mark: &mut dyn FnMut(usize)| {
        mark(c.w);
        if let Some(b) = c.b {
            mark(b);
        }
    };
    match arch {
        Arch::Mlp { hidden, .. } => hidden.iter().flat_map(|(_, n)| norm_params(*n)).for_each(&mut mark),
        Arch::Cnn { convs, .. } => {
            for (c, n) in convs {
                conv(c, &mut mark);
                norm_params(*n).into_iter().for_each(&mut mark);
            }
        }
        Arch::CnnLstm { net, .. } => {
            mark(net.conv_w);
            mark(net.conv_b);
        }
        Arch::Resnet { stem, blocks, .. } => {
            conv(&stem.0, &mut mark);
            norm_params(stem.1).into_iter().for_each(&mut mark);
            for blk in blocks {
                let short = blk.shortcut.as_ref();
                for c in [Some(&blk.conv1), Some(&blk.conv2), short.map(|s| &s.0)].into_iter().flatten() {
                    conv(c, &mut mark);
                }
                norm_params(blk.norm1)
                    .into_iter()
                    .chain(norm_params(blk.norm2))
                    .chain(short.map_or_else(Vec::new, |s| norm_params(s.1)))
                    .chain(blk.tlu)
                    .for_each(&mut mark);
            }
        }
    }
    g
}

/// Batch norm (batch statistics in training, running statistics in inference), or FRN:
/// max(γ·x/√(ν²+ε) + β, τ) with ν² the mean square over spatial positions per example and
/// channel (the threshold is part of the paper's FRN layer).
fn apply_norm(x: Tensor, norm: Norm, v: &[Tensor], bn: &mut BnState, train: bool) -> Result<Tensor, tch::TchError> {
    match norm {
        Norm::None => Ok(x),
        Norm::Batch { gamma, beta, slot } => {
            let (mean, var) = &bn.running[slot];
            Tensor::f_batch_norm(
                &x,
                Some(&v[gamma]),
                Some(&v[beta]),
                Some(mean),
                Some(var),
                train,
                BN_MOMENTUM,
                BN_EPS,
                false,
            )
        }
        Norm::Frn { gamma, beta, tau } => {
            let nu2 = x.f_square()?.f_mean_dim([2, 3].as_slice(), true, Kind::Float)?;
            let xn = x.f_mul(&nu2.f_add_scalar(FRN_EPS)?.f_rsqrt()?)?;
            xn.f_mul(&v[gamma].view([1, -1, 1, 1]))?
                .f_add(&v[beta].view([1, -1, 1, 1]))?
                .f_maximum(&v[tau].view([1, -1, 1, 1]))
        }
    }
}

/// The cnn-lstm: a 1-D convolution over the rows of the input (H steps of C·W features),
/// max-pooling, a hand-written LSTM and a dense head.
fn cnn_lstm_arch(
    b: &mut Builder,
    (filters, kernel, pool, hidden): (&usize, &usize, &usize, &usize),
    toggles: ModelToggles,
    (c, h, w): (i64, i64, i64),
    classes: i64,
) -> Result<(Arch, Activation), EngineError> {
    if toggles.norm != NormKind::None {
        return Err(EngineError::Config(
            "cnn-lstm has no normalisation layers (batch norm and FRN are image layers here); use a \
                 likelihood without them, e.g. `categorical` or `dropout`"
                .into(),
        ));
    }
    let (f, k, hd) = (*filters as i64, *kernel as i64, *hidden as i64);
    let features = c * w;
    if h / (*pool as i64) < 1 {
        return Err(EngineError::Config(format!(
            "cnn-lstm pooling by {pool} leaves no time step of {h}; use a smaller pool"
        )));
    }
    let conv_w = b.param("conv", Role::Weight, "weight", vec![f, features, k], features * k, f * k);
    let conv_b = b.param("conv", Role::Bias, "bias", vec![f], features * k, f * k);
    let w_ih = b.param("lstm", Role::Weight, "weight_ih", vec![4 * hd, f], f, 4 * hd);
    let w_hh = b.param("lstm", Role::Weight, "weight_hh", vec![4 * hd, hd], hd, 4 * hd);
    let b_lstm = b.param("lstm", Role::Bias, "bias", vec![4 * hd], f + hd, 4 * hd);
    let net = SeqNet { conv_w, conv_b, kernel: k, pool: *pool as i64, w_ih, w_hh, b_lstm };
    Ok((Arch::CnnLstm { net, head: b.linear("head", hd, classes) }, Activation::Relu))
}

/// ResNet-20: a stem, three stages of three residual blocks (stride 2 and a projection shortcut
/// where the width changes), a dense head.
fn resnet20_arch(b: &mut Builder, width: usize, toggles: ModelToggles, c: i64, classes: i64) -> (Arch, Activation) {
    let base = 16 * width as i64;
    let stem = (b.conv("stem", c, base, 3, 1, true), b.norm("stem_norm", base));
    let mut blocks = Vec::new();
    let mut inp = base;
    for stage in 0..3 {
        let filters = base << stage;
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let name = format!("stage{stage}_block{block}");
            let conv1 = b.conv(&format!("{name}_conv1"), inp, filters, 3, stride, true);
            let norm1 = b.norm(&format!("{name}_norm1"), filters);
            let conv2 = b.conv(&format!("{name}_conv2"), filters, filters, 3, 1, true);
            let norm2 = b.norm(&format!("{name}_norm2"), filters);
            let shortcut = (stride != 1 || inp != filters).then(|| {
                let conv = b.conv(&format!("{name}_shortcut"), inp, filters, 1, stride, true);
                (conv, b.norm(&format!("{name}_shortcut_norm"), filters))
            });
            let tlu = (toggles.norm == NormKind::Frn)
                .then(|| b.param(&format!("{name}_tlu"), Role::Norm, "tau", vec![filters], filters, filters));
            blocks.push(Block { conv1, norm1, conv2, norm2, shortcut, tlu });
            inp = filters;
        }
    }
    (Arch::Resnet { stem, blocks, head: b.linear("head", inp, classes) }, Activation::Relu)
}
