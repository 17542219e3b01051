//! Counting the operators libtorch dispatches, to measure a sampler step's launch count on any
//! device: a GPU pays a fixed host cost (a few µs) for every kernel it launches, so a step of a
//! small model is bound by how many operators it dispatches, not by its arithmetic. The CPU runs
//! the same operators (apart from the loops `fused` replaces, which `ABLATE_UNFUSED=1` turns
//! off), so the count measured here is the one a GPU step pays for.
//!
//! A global observer in the C++ shim (`shim/dispatch_count.cpp`) counts every operator call, and
//! by name the *issued* calls: those the engine and plugins make (top-level calls) and, in the
//! backward pass, those each autograd node makes (its derivative formula). Calls nested deeper
//! are how a device's kernel is written (a CPU matrix product dispatches copies of its own, a
//! CUDA one does not) and do not count as launches. It slows every dispatch, so it is registered
//! only while a [`Counting`] lives: benchmarks and tests, never a run.

use std::collections::BTreeMap;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::EngineError;

mod ffi {
    use std::ffi::c_char;
    extern "C" {
        pub fn ablate_ops_start(err: *mut c_char, len: usize) -> std::ffi::c_int;
        pub fn ablate_ops_stop();
        pub fn ablate_ops_read(all: *mut u64, nodes: *mut u64);
        pub fn ablate_ops_names(buf: *mut c_char, len: usize) -> usize;
        pub fn ablate_ops_cpu_only(delta: std::ffi::c_int);
    }
}

/// Operators that launch no kernel on a GPU: views, shape and metadata changes, allocation
/// without initialisation, and conversions that found nothing to convert.
const NO_KERNEL: &[&str] = &[
    "aten::_reshape_alias",
    "aten::_unsafe_view",
    "aten::alias",
    "aten::as_strided",
    "aten::chunk",
    "aten::detach",
    "aten::detach_",
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::expand",
    "aten::expand_as",
    "aten::lift_fresh",
    "aten::movedim",
    "aten::narrow",
    "aten::permute",
    "aten::requires_grad_",
    "aten::reshape",
    "aten::resize_",
    "aten::result_type",
    "aten::select",
    "aten::set_",
    "aten::slice",
    "aten::split",
    "aten::squeeze",
    "aten::squeeze_",
    "aten::t",
    "aten::to",
    "aten::transpose",
    "aten::unbind",
    "aten::unflatten",
    "aten::unsqueeze",
    "aten::unsqueeze_",
    "aten::view",
    "aten::view_as",
];

/// The operators that copy a single value to the host: on a GPU each waits for the device.
const HOST_READS: &[&str] = &["aten::item", "aten::_local_scalar_dense"];

/// Operator calls counted over some stretch of work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Every operator call, nested ones included.
    pub all: u64,
    /// Backward-pass nodes evaluated by autograd.
    pub nodes: u64,
    /// Issued calls (top-level ones and the backward nodes' own) and the backward nodes
    /// (`autograd::engine::evaluate_function: <node>`), by name.
    pub by_name: BTreeMap<String, u64>,
}

impl OpCounts {
    /// Issued calls that launch a kernel on a GPU (less views, allocation and other metadata
    /// operations, and the autograd bookkeeping that is no operator): the step's launch count,
    /// up to composite operators that launch two (a loss that is a log-softmax and a gather).
    pub fn kernels(&self) -> u64 {
        self.kernel_ops().iter().map(|(_, n)| n).sum()
    }

    /// Calls that read a value back to the host (each one a device synchronisation on a GPU).
    pub fn host_reads(&self) -> u64 {
        HOST_READS.iter().filter_map(|name| self.by_name.get(*name)).sum()
    }

    /// What was counted after `earlier` (an earlier reading of the same counting).
    pub fn since(&self, earlier: &OpCounts) -> OpCounts {
        let by_name = self
            .by_name
            .iter()
            .filter_map(|(name, &n)| {
                let d = n.saturating_sub(earlier.by_name.get(name).copied().unwrap_or(0));
                (d > 0).then(|| (name.clone(), d))
            })
            .collect();
        OpCounts { all: self.all.saturating_sub(earlier.all), nodes: self.nodes.saturating_sub(earlier.nodes), by_name }
    }

    /// The kernel-launching leaf operators, most frequent first.
    pub fn kernel_ops(&self) -> Vec<(&str, u64)> {
        let mut ops: Vec<(&str, u64)> =
            self.by_name.iter().filter(|(name, _)| launches(name)).map(|(name, &n)| (name.as_str(), n)).collect();
        ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ops
    }
}

/// Marks work the engine does on the CPU only (the per-step checks a GPU step skips because
/// they would synchronise it) while it lives: its operator calls are not counted as issued, so
/// a count on the CPU is the count of the same step on a GPU. Costs a thread-local increment.
#[derive(Debug)]
pub struct CpuOnly(std::marker::PhantomData<*const ()>);

impl CpuOnly {
    pub fn enter() -> Self {
        // SAFETY: adjusts a thread-local counter in the shim.
        unsafe { ffi::ablate_ops_cpu_only(1) };
        Self(std::marker::PhantomData)
    }
}

impl Drop for CpuOnly {
    fn drop(&mut self) {
        // SAFETY: leaves the region `enter` opened on this thread (the guard is not Send).
        unsafe { ffi::ablate_ops_cpu_only(-1) };
    }
}

/// Whether a call of operator `name` launches a kernel on a GPU.
fn launches(name: &str) -> bool {
    name.starts_with("aten::") && !NO_KERNEL.contains(&name)
}

/// Whether a [`Counting`] is alive (the observer is process-wide: one at a time).
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Counts operator calls from its start until it is dropped.
#[derive(Debug)]
pub struct Counting(());

impl Counting {
    /// Start counting from zero. Fails if another counting is alive or libtorch refuses the
    /// observer.
    pub fn start() -> Result<Self, EngineError> {
        if COUNTING.swap(true, Ordering::SeqCst) {
            return Err(EngineError::Config("operator counting is already running in this process".into()));
        }
        // SAFETY: the shim writes at most `len` bytes into the buffer it is given.
        crate::compute::shim_call(|err, len| unsafe { ffi::ablate_ops_start(err, len) }).map_err(|message| {
            COUNTING.store(false, Ordering::SeqCst);
            EngineError::Config(format!("libtorch refused the operator counter: {message}"))
        })?;
        Ok(Self(()))
    }

    /// The counts so far.
    pub fn read(&self) -> OpCounts {
        let (mut all, mut nodes) = (0u64, 0u64);
        // SAFETY: two valid u64 locations.
        unsafe { ffi::ablate_ops_read(&raw mut all, &raw mut nodes) };
        // SAFETY: a null buffer asks for the length only.
        let needed = unsafe { ffi::ablate_ops_names(std::ptr::null_mut(), 0) };
        // Room for names counted between the two calls.
        let mut buf = vec![0u8; needed + 4096];
        // SAFETY: the buffer's length is passed along; the shim NUL-terminates within it.
        unsafe { ffi::ablate_ops_names(buf.as_mut_ptr().cast::<c_char>(), buf.len()) };
        let text =
            std::ffi::CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
        let by_name = text
            .lines()
            .filter_map(|line| {
                let (name, n) = line.rsplit_once('\t')?;
                Some((name.to_owned(), n.parse().ok()?))
            })
            .collect();
        OpCounts { all, nodes, by_name }
    }
}

/// An [`Observer`](crate::chain::Observer) that reads a [`Counting`] after every sampler step:
/// what each step dispatched (the first step's count includes the set-up before it).
#[derive(Debug)]
pub struct PerStep {
    counting: Counting,
    last: OpCounts,
    /// The counts of each step, in order.
    pub steps: Vec<OpCounts>,
}

impl PerStep {
    /// Start counting (see [`Counting::start`]).
    pub fn start() -> Result<Self, EngineError> {
        let counting = Counting::start()?;
        let last = counting.read();
        Ok(Self { counting, last, steps: Vec::new() })
    }

    /// The step of median launch count (an ordinary sampling step: epoch starts, member
    /// evaluations and the set-up land in the few largest), if any step ran.
    pub fn median(&self) -> Option<&OpCounts> {
        let mut order: Vec<&OpCounts> = self.steps.iter().collect();
        order.sort_by_key(|c| c.kernels());
        order.get(order.len() / 2).copied()
    }
}

impl crate::chain::Observer for PerStep {
    fn step(&mut self, _k: u64, _theta: &tch::Tensor, _host: &mut crate::host::TchHost<'_>) {
        let now = self.counting.read();
        self.steps.push(now.since(&self.last));
        self.last = now;
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        // SAFETY: removes the observer this counting registered.
        unsafe { ffi::ablate_ops_stop() };
        COUNTING.store(false, Ordering::SeqCst);
    }
}
