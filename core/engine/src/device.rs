//! `--device auto|cpu|cuda[:N]`.

use tch::Device;

use crate::EngineError;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| EngineError::Device(format!("unknown device `{s}`: use auto, cpu, cuda or cuda:N"))),
        }
    }
}

/// Resolve a choice to a libtorch device: `auto` is CUDA when libtorch's CUDA part is loaded and
/// a GPU is visible, else CPU. Asking for CUDA where there is none is an error, not a fallback.
pub fn parse_device(choice: DeviceChoice) -> Result<Device, EngineError> {
    let gpus = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if gpus > 0 => Ok(Device::Cuda(0)),
        DeviceChoice::Auto => Ok(Device::Cpu),
        DeviceChoice::Cuda(i) if i < gpus => Ok(Device::Cuda(i)),
        DeviceChoice::Cuda(i) => Err(EngineError::Device(if gpus == 0 {
            format!(
                "--device cuda:{i} was asked for, but libtorch sees no CUDA GPU (cuda available: {}, \
                 libtorch built with CUDA: {}). Use --device cpu, or build against a CUDA libtorch \
                 (LIBTORCH_USE_PYTORCH=1 with `pip install torch==2.11.0`) on a GPU machine; `ablate doctor` shows what is linked",
                tch::Cuda::is_available(),
                tch::utils::has_cuda()
            )
        } else {
            format!("--device cuda:{i} was asked for, but only {gpus} GPU(s) are visible (cuda:0..cuda:{})", gpus - 1)
        })),
    }
}

/// The device as `--device` spells it: `cpu`, `cuda:N`.
pub fn name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

/// Choose the device and say so once.
pub fn resolve(choice: DeviceChoice) -> Result<Device, EngineError> {
    let device = parse_device(choice)?;
    tracing::info!(?choice, ?device, "device");
    Ok(device)
}

/// cuDNN's autotuner (`cudnn.benchmark`): on a GPU it times the convolution algorithms for each
/// new shape once and keeps the fastest. Without it cuDNN's heuristic picks slow kernels for the
/// grouped convolutions of batched chains. `ABLATE_CUDNN_BENCHMARK=0` turns it off (then cuDNN's
/// choice does not depend on timings).
pub fn configure_cuda(device: Device) {
    if device.is_cuda() {
        let on = std::env::var("ABLATE_CUDNN_BENCHMARK").map_or(true, |v| v != "0");
        tch::Cuda::cudnn_set_benchmark(on);
        tracing::debug!(cudnn_benchmark = on, "cuDNN");
    }
}
