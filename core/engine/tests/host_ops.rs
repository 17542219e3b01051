//! The shape-changing host ops (`matmul`, `reshape`, `constant_like`, added at the end of the
//! op table) give the same values on the libtorch host (float32) and the test kit's CpuHost
//! (f64), refuse the same malformed calls with the same message, and keep autograd through
//! `matmul`/`reshape` on the libtorch host.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use abi_stable::std_types::RSlice;
use ablate_engine::host::TchHost;
use ablate_engine::suite_host::SuiteHost;
use ablate_sdk::abi::TensorId;
use ablate_sdk::testkit::{CpuHost, TestHost};
use tch::{Device, Kind, Tensor};

/// Row-major values 0.1·(i+1)·(−1)^i.
fn vals(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.1 * (i as f64 + 1.0) * if i % 2 == 0 { 1.0 } else { -1.0 }).collect()
}

/// Runs `f` on a host and returns (shape, values) of its result, or the host error.
fn on<H: TestHost>(host: &mut H, f: impl Fn(&mut H) -> TensorId) -> Result<(Vec<i64>, Vec<f64>), String> {
    let id = f(host);
    if let Some(e) = host.take_error() {
        return Err(e);
    }
    let shape = host.host_ref().shape(id).into_vec();
    let data = host.download(id);
    Ok((shape, data))
}

fn matmul_case<H: TestHost>(h: &mut H, a: &[i64], b: &[i64]) -> TensorId {
    let x = h.upload(a, &vals(a.iter().product::<i64>() as usize));
    let y = h.upload(b, &vals(b.iter().product::<i64>() as usize));
    h.host_ref().matmul(x, y)
}

fn reshape_case<H: TestHost>(h: &mut H, from: &[i64], to: &[i64]) -> TensorId {
    let x = h.upload(from, &vals(from.iter().product::<i64>() as usize));
    h.host_ref().reshape(x, RSlice::from_slice(to))
}

fn constant_case<H: TestHost>(h: &mut H, shape: &[i64], values: &[f64]) -> TensorId {
    let like = h.upload(&[1], &[0.0]);
    h.host_ref().constant_like(like, RSlice::from_slice(shape), RSlice::from_slice(values))
}

fn agree(what: &str, cpu: Result<(Vec<i64>, Vec<f64>), String>, torch: Result<(Vec<i64>, Vec<f64>), String>) {
    match (cpu, torch) {
        (Ok((sc, vc)), Ok((st, vt))) => {
            assert_eq!(sc, st, "{what}: shapes");
            assert_eq!(vc.len(), vt.len(), "{what}: lengths");
            for (a, b) in vc.iter().zip(&vt) {
                // float32 rounding of inputs and sums: 1e-6 relative to the magnitudes here.
                assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{what}: {a} (f64) vs {b} (float32)");
            }
        }
        (Err(ec), Err(et)) => assert_eq!(ec, et, "{what}: both refuse, with the same message"),
        (c, t) => panic!("{what}: the hosts disagree: CpuHost {c:?}, libtorch {t:?}"),
    }
}

#[test]
fn matmul_reshape_and_constants_agree_on_both_hosts() {
    let mut cpu = CpuHost::new(1);
    let mut torch = SuiteHost::new(Device::Cpu, 1);
    let mm: [(&[i64], &[i64]); 6] = [
        (&[2, 3], &[3, 4]),
        (&[5, 2, 3], &[3, 4]),
        (&[2, 5, 2, 3], &[2, 5, 3, 1]),
        (&[2, 3], &[4, 4]),
        (&[3], &[3, 4]),
        (&[2, 2, 3], &[3, 3, 4]),
    ];
    for (a, b) in mm {
        let what = format!("matmul {a:?} @ {b:?}");
        agree(&what, on(&mut cpu, |h| matmul_case(h, a, b)), on(&mut torch, |h| matmul_case(h, a, b)));
    }
    let rs: [(&[i64], &[i64]); 5] =
        [(&[2, 3, 4], &[-1, 4]), (&[6], &[2, 3]), (&[6], &[4, -1]), (&[6], &[-1, -1]), (&[6], &[7])];
    for (from, to) in rs {
        let what = format!("reshape {from:?} -> {to:?}");
        agree(&what, on(&mut cpu, |h| reshape_case(h, from, to)), on(&mut torch, |h| reshape_case(h, from, to)));
    }
    let cs: [(&[i64], Vec<f64>); 4] =
        [(&[2, 2], vec![1.0, -2.0, 0.5, 3.0]), (&[3], vec![1.0, 2.0]), (&[1], vec![1e39]), (&[1], vec![f64::NAN])];
    for (shape, values) in cs {
        let what = format!("constant {shape:?} {values:?}");
        agree(
            &what,
            on(&mut cpu, |h| constant_case(h, shape, &values)),
            on(&mut torch, |h| constant_case(h, shape, &values)),
        );
    }
}

#[test]
fn a_hand_computed_product_and_autograd_through_matmul_and_reshape() {
    // [[1, 2], [3, 4]] @ [[5], [6]] = [[17], [39]].
    let mut cpu = CpuHost::new(1);
    let got = on(&mut cpu, |h| {
        let a = h.upload(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = h.upload(&[2, 1], &[5.0, 6.0]);
        h.host_ref().matmul(a, b)
    });
    assert_eq!(got, Ok((vec![2, 1], vec![17.0, 39.0])));

    // d/dx sum(reshape(x, [2, 2]) @ c) = c's row sums, broadcast: x = [x0 x1; x2 x3], c = [[1, 2], [3, 4]].
    let mut host = TchHost::new();
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).set_requires_grad(true);
    let xid = host.insert(x.shallow_clone());
    let out = host
        .call(|h| {
            let c = h.constant_like(xid, RSlice::from_slice(&[2, 2]), RSlice::from_slice(&[1.0, 2.0, 3.0, 4.0]));
            let r = h.reshape(xid, RSlice::from_slice(&[2, 2]));
            abi_stable::std_types::RResult::ROk(h.matmul(r, c))
        })
        .unwrap();
    let y = host.get(out).unwrap().sum(Kind::Float);
    let g = Tensor::run_backward(&[y], &[&x], false, false).remove(0);
    assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![3.0, 7.0, 3.0, 7.0]);
}

/// `assign` (`Tensor::set`) copies a source of the destination's shape on both hosts and
/// refuses any other shape with the same message: libtorch's `copy_` would broadcast, so a
/// noise plugin's `g.set(&g.sum())` filled the gradient with its sum and passed every later
/// shape check.
#[test]
fn assign_copies_its_own_shape_and_refuses_a_broadcast_on_both_hosts() {
    fn assign_case<H: TestHost>(h: &mut H, dst: &[i64], src: &[i64]) -> TensorId {
        let d = h.upload(dst, &vals(dst.iter().product::<i64>() as usize));
        let s = h.upload(src, &vals(src.iter().product::<i64>() as usize).iter().map(|v| v * 3.0).collect::<Vec<_>>());
        h.host_ref().assign(d, s);
        d
    }
    let mut cpu = CpuHost::new(1);
    let mut torch = SuiteHost::new(Device::Cpu, 1);
    let cases: [(&[i64], &[i64]); 4] = [(&[2, 3], &[2, 3]), (&[2, 3], &[1]), (&[2, 3], &[3]), (&[4], &[2, 2])];
    for (dst, src) in cases {
        let what = format!("assign {src:?} into {dst:?}");
        let (c, t) = (on(&mut cpu, |h| assign_case(h, dst, src)), on(&mut torch, |h| assign_case(h, dst, src)));
        if dst == src {
            assert_eq!(c.as_ref().unwrap().1, vals(6).iter().map(|v| v * 3.0).collect::<Vec<_>>(), "{what}");
        } else {
            let e = c.as_ref().unwrap_err();
            assert!(e.contains("`assign` (Tensor::set): the source has shape"), "{what}: {e}");
        }
        agree(&what, c, t);
    }
}
