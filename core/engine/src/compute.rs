//! How the network computes: its arithmetic (the cell setting `precision`) and the memory layout
//! of convolutional activations.
//!
//! - `fp32` (default): IEEE float32 throughout. On CUDA this switches TF32 *off* for matrix
//!   products and convolutions (libtorch's own default lets cuDNN convolutions use TF32).
//! - `tf32`: CUDA matrix products and convolutions round their inputs to TF32 (10-bit mantissa,
//!   fp32 accumulation). A CPU has no TF32: `ablate run` refuses `tf32` cells there before
//!   anything runs ([`device_problem`]), rather than compute fp32 under a tf32 label.
//! - `bf16`: the network's forward pass runs under libtorch's autocast to bfloat16 (CPU or CUDA;
//!   matrix products and convolutions in bf16, reductions and normalisation statistics in fp32),
//!   and so does its backward pass (autograd replays the casts). The logits leave the network as
//!   fp32.
//!
//! In every mode the parameters θ, momenta, preconditioner, prior, likelihood and injected noise
//! stay fp32: only the network's own arithmetic changes (the gradient reaching the sampler is
//! fp32, computed through lower-precision products).
//!
//! Channels-last (NHWC strides for [B, C, H, W] activations) is a layout, not arithmetic: it is
//! used for convolutional models on CUDA when `ABLATE_CHANNELS_LAST=1`, and is off by default
//! until a GPU measurement shows it faster for the grouped convolutions of batched chains.
//!
//! tch 0.24 exposes none of bf16 autocast, the TF32 switches or memory formats; they come from
//! a small C++ shim (`shim/compute.cpp`) compiled against the headers of the linked libtorch.

use std::ffi::{c_char, c_int, CStr};

use ablate_grid::config::Precision;
use ablate_records::ComputeRecord;
use tch::{Device, Tensor};

use crate::EngineError;

mod ffi {
    use std::ffi::{c_char, c_int};
    extern "C" {
        pub fn ablate_autocast_enter(
            cuda: c_int,
            prev_enabled: *mut c_int,
            prev_dtype: *mut c_int,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn ablate_autocast_exit(
            cuda: c_int,
            prev_enabled: c_int,
            prev_dtype: c_int,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn ablate_autocast_enabled(cuda: c_int) -> c_int;
        pub fn ablate_set_cuda_tf32(on: c_int, err: *mut c_char, len: usize) -> c_int;
        pub fn ablate_cuda_tf32(op: c_int) -> c_int;
        pub fn ablate_channels_last(
            t: *const torch_sys::C_tensor,
            err: *mut c_char,
            len: usize,
        ) -> *mut torch_sys::C_tensor;
        pub fn ablate_is_channels_last(t: *const torch_sys::C_tensor) -> c_int;
    }
}

/// Room for a libtorch error message from the shim.
const ERR_LEN: usize = 512;

/// Calls a shim function with an error buffer: a nonzero return becomes `Err` with the message
/// the shim wrote. The one reader of the shim's errors (this module, `fused`'s scaled updates,
/// `dispatch_count`).
pub(crate) fn shim_call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut buf = [0 as c_char; ERR_LEN];
    if f(buf.as_mut_ptr(), ERR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: the shim NUL-terminates what it writes (truncating to the buffer), and the buffer
    // starts zeroed, so there is a NUL within it.
    Err(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// Calls a shim function with an error buffer; a nonzero return becomes an error naming `what`.
fn checked(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), EngineError> {
    shim_call(f).map_err(|msg| EngineError::Device(format!("libtorch refused {what}: {msg}")))
}

/// The network's arithmetic and layout for one cell (or batch of cells) on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compute {
    pub precision: Precision,
    /// Convolutional activations in the channels-last layout.
    pub channels_last: bool,
}

impl Compute {
    /// The settings of a cell with `precision` on `device`; `convolutional` says whether the
    /// model has convolutions (the only layers a layout changes).
    pub fn new(precision: Precision, device: Device, convolutional: bool) -> Self {
        let channels_last =
            device.is_cuda() && convolutional && std::env::var("ABLATE_CHANNELS_LAST").is_ok_and(|v| v == "1");
        Self { precision, channels_last }
    }

    /// What `metrics.json` records of this mode as it ran on `device`.
    pub fn record(&self, device: Device) -> ComputeRecord {
        ComputeRecord {
            arithmetic: self.precision.name().to_owned(),
            channels_last: self.channels_last,
            device: crate::device::name(device),
        }
    }

    /// The process-wide switches of this mode: on CUDA, TF32 on for `tf32`, off otherwise (so
    /// that `fp32` means IEEE fp32 for convolutions too). Nothing to set on the CPU, where
    /// `tf32` is refused ([`device_problem`]).
    pub fn configure(&self, device: Device) -> Result<(), EngineError> {
        if let Some(problem) = device_problem(self.precision, device) {
            return Err(EngineError::Config(problem));
        }
        if !device.is_cuda() {
            return Ok(());
        }
        let on = c_int::from(self.precision == Precision::Tf32);
        // SAFETY: the shim only touches libtorch's global context; the buffer outlives the call.
        checked("the TF32 setting", |err, len| unsafe { ffi::ablate_set_cuda_tf32(on, err, len) })?;
        tracing::debug!(tf32 = on == 1, "CUDA matmul/conv precision");
        Ok(())
    }

    /// Enter the network's arithmetic for one forward pass on `device`: a bf16 autocast region
    /// for `bf16` (left when the returned guard drops), nothing otherwise.
    pub fn scope(&self, device: Device) -> Result<Option<AutocastScope>, EngineError> {
        match self.precision {
            Precision::Bf16 => AutocastScope::enter(device).map(Some),
            Precision::Fp32 | Precision::Tf32 => Ok(None),
        }
    }

    /// `x` in this mode's layout: channels-last for 4-D activations when it is on.
    pub fn layout(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        if self.channels_last && x.dim() == 4 {
            channels_last(x)
        } else {
            Ok(x.shallow_clone())
        }
    }
}

/// Why `precision` cannot run on `device` (None: it can). `tf32` needs CUDA: a CPU would compute
/// fp32 and label it tf32.
pub fn device_problem(precision: Precision, device: Device) -> Option<String> {
    (precision == Precision::Tf32 && !device.is_cuda()).then(|| {
        format!(
            "precision tf32 needs a CUDA device (TF32 is a mode of NVIDIA matrix units), and this runs on {}: \
             run with --device cuda on a GPU machine, or use fp32 (what a CPU computes) or bf16",
            crate::device::name(device)
        )
    })
}

/// A bf16 autocast region of the current thread; dropping it restores the previous state and
/// clears autocast's cache of casted weights (the sampler changes them in place between steps).
#[derive(Debug)]
pub struct AutocastScope {
    cuda: c_int,
    prev_enabled: c_int,
    prev_dtype: c_int,
}

impl AutocastScope {
    /// Autocast to bf16 for `device`'s type (CPU or CUDA).
    pub fn enter(device: Device) -> Result<Self, EngineError> {
        let cuda = c_int::from(device.is_cuda());
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        // SAFETY: the out-pointers and the buffer outlive the call.
        checked("bf16 autocast", |err, len| unsafe {
            ffi::ablate_autocast_enter(cuda, &mut prev_enabled, &mut prev_dtype, err, len)
        })?;
        Ok(Self { cuda, prev_enabled, prev_dtype })
    }
}

impl Drop for AutocastScope {
    fn drop(&mut self) {
        let (cuda, enabled, dtype) = (self.cuda, self.prev_enabled, self.prev_dtype);
        // SAFETY: restores the state `enter` read on this thread.
        if let Err(e) = checked("leaving bf16 autocast", |err, len| unsafe {
            ffi::ablate_autocast_exit(cuda, enabled, dtype, err, len)
        }) {
            tracing::error!("{e}");
        }
    }
}

/// Check that the compute modes work on `device` (for `ablate doctor`): a matrix product under
/// bf16 autocast comes out bf16, and on CUDA the TF32 switch turns on and off again. Leaves TF32
/// off. Returns what was checked.
pub fn probe(device: Device) -> Result<String, EngineError> {
    let a = Tensor::f_ones([8, 8], (tch::Kind::Float, device))?;
    let kind = {
        let _scope = AutocastScope::enter(device)?;
        a.f_matmul(&a)?.kind()
    };
    if kind != tch::Kind::BFloat16 {
        return Err(EngineError::Device(format!("a product under bf16 autocast on {device:?} came out {kind:?}")));
    }
    if !device.is_cuda() {
        return Ok("fp32 ok, bf16 autocast ok, tf32 needs CUDA".into());
    }
    Compute { precision: Precision::Tf32, channels_last: false }.configure(device)?;
    let on = cuda_tf32();
    Compute::default().configure(device)?;
    let off = cuda_tf32();
    if on != (true, true) || off != (false, false) {
        return Err(EngineError::Device(format!("the CUDA TF32 switch did not take: on {on:?}, off {off:?}")));
    }
    Ok("fp32 ok (TF32 off), bf16 autocast ok, tf32 ok (TF32 switch)".into())
}

/// Whether bf16 autocast is on for `device`'s type on this thread.
pub fn autocast_enabled(device: Device) -> bool {
    // SAFETY: reads thread-local libtorch state.
    unsafe { ffi::ablate_autocast_enabled(c_int::from(device.is_cuda())) == 1 }
}

/// Whether CUDA (matrix products, convolutions) may use TF32 now.
pub fn cuda_tf32() -> (bool, bool) {
    // SAFETY: reads libtorch's global context.
    unsafe { (ffi::ablate_cuda_tf32(0) == 1, ffi::ablate_cuda_tf32(1) == 1) }
}

/// A channels-last copy of a 4-D tensor (same shape and values, NHWC strides); differentiable.
pub fn channels_last(x: &Tensor) -> Result<Tensor, EngineError> {
    let mut out = std::ptr::null_mut();
    checked("the channels-last layout", |err, len| {
        // SAFETY: `x` stays alive for the call; the shim returns a new owned tensor or null.
        out = unsafe { ffi::ablate_channels_last(x.as_ptr(), err, len) };
        c_int::from(out.is_null())
    })?;
    // SAFETY: `out` is a fresh heap tensor that tch now owns (and frees on drop).
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether `x` is laid out channels-last.
pub fn is_channels_last(x: &Tensor) -> bool {
    // SAFETY: `x` stays alive for the call.
    unsafe { ffi::ablate_is_channels_last(x.as_ptr()) == 1 }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::Kind;

    #[test]
    fn bf16_scope_runs_products_in_bf16_and_restores_state() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        assert!(!autocast_enabled(Device::Cpu));
        {
            let _outer = AutocastScope::enter(Device::Cpu).unwrap();
            {
                let _inner = AutocastScope::enter(Device::Cpu).unwrap();
                assert!(autocast_enabled(Device::Cpu));
            }
            assert!(autocast_enabled(Device::Cpu), "leaving the inner region keeps the outer one");
            assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        }
        assert!(!autocast_enabled(Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
    }

    #[test]
    fn fp32_and_tf32_open_no_region() {
        for p in [Precision::Fp32, Precision::Tf32] {
            let c = Compute { precision: p, channels_last: false };
            assert!(c.scope(Device::Cpu).unwrap().is_none());
        }
        assert!(device_problem(Precision::Tf32, Device::Cpu).is_some_and(|p| p.contains("--device cuda")));
        assert!(device_problem(Precision::Tf32, Device::Cuda(0)).is_none());
        assert!(device_problem(Precision::Bf16, Device::Cpu).is_none());
        let err = Compute { precision: Precision::Tf32, channels_last: false }.configure(Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("tf32 needs a CUDA device"), "{err}");
    }

    #[test]
    fn channels_last_keeps_shape_and_values() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        assert!(!is_channels_last(&x));
        let y = channels_last(&x).unwrap();
        assert!(is_channels_last(&y));
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(y.equal(&x));
    }
}
