//! The operator counter (`ablate_engine::dispatch_count`) on known operations. Its observer is
//! process-wide and sees every thread, so these tests live in a binary of their own (no other
//! test's tensors in flight) and run one at a time.
// Tests may unwrap (a panic is the failure report).
#![allow(clippy::unwrap_used)]

use ablate_engine::dispatch_count::{Counting, CpuOnly};
use tch::{Device, Kind, Tensor};

/// One counting at a time in this test binary (the observer is process-wide).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn counts_the_kernels_of_known_operations_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let a = Tensor::ones([8], (Kind::Float, Device::Cpu));
    let b = Tensor::ones([8], (Kind::Float, Device::Cpu));
    let counting = Counting::start().unwrap();
    let before = counting.read();
    let mut c = a.f_add(&b).unwrap(); // one kernel
    let _ = c.f_mul_(&b).unwrap(); // one kernel, in place
    let _ = c.f_view([2, 4]).unwrap(); // a view: no kernel
    let after = counting.read();
    let step = after.since(&before);
    assert_eq!(step.kernels(), 2, "{step:?}");
    assert_eq!(step.by_name.get("aten::add"), Some(&1), "{step:?}");
    assert_eq!(step.by_name.get("aten::mul_"), Some(&1), "{step:?}");
    assert_eq!(step.by_name.get("aten::view"), Some(&1), "{step:?}");
    assert_eq!(step.host_reads(), 0);
    let _ = c.f_sum(Kind::Float).unwrap().double_value(&[]);
    assert_eq!(counting.read().since(&after).host_reads(), 1);
}

/// A backward pass counts each node's own calls (the derivative formula), not how the CPU
/// kernels inside them are written: y = sum(w·x) launches mul and sum forward; backward,
/// SumBackward expands (a view) and MulBackward multiplies once (w's gradient only).
#[test]
fn counts_the_backward_nodes_own_calls() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let w = Tensor::ones([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let x = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let counting = Counting::start().unwrap();
    let y = w.f_mul(&x).unwrap().f_sum(Kind::Float).unwrap();
    let forward = counting.read();
    assert_eq!(forward.kernels(), 2, "{forward:?}");
    let grads = Tensor::f_run_backward(&[&y], &[&w], false, false).unwrap();
    let backward = counting.read().since(&forward);
    assert_eq!(grads.len(), 1);
    assert!(backward.nodes >= 2, "{backward:?}");
    assert_eq!(backward.by_name.get("aten::mul"), Some(&1), "{backward:?}");
    assert!(backward.all > backward.kernels());
}

#[test]
fn cpu_only_work_is_not_counted_as_issued() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let a = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let counting = Counting::start().unwrap();
    {
        let _cpu = CpuOnly::enter();
        let _ = a.f_isfinite().unwrap().f_all().unwrap();
    }
    let _ = a.f_neg().unwrap();
    let counts = counting.read();
    assert_eq!(counts.kernel_ops(), vec![("aten::neg", 1)], "{counts:?}");
    assert!(counts.all >= 3);
}

#[test]
fn a_second_counting_is_refused_while_one_runs_and_allowed_after() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = Counting::start().unwrap();
    assert!(Counting::start().is_err());
    drop(first);
    let again = Counting::start().unwrap();
    let _ = Tensor::ones([2], (Kind::Float, Device::Cpu)).f_neg().unwrap();
    assert!(again.read().by_name.contains_key("aten::neg"));
}
