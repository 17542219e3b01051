//! Image augmentation kernels offered to likelihood plugins.

use tch::{Kind, Tensor};

/// Random per-example crop of zero-padded images (N,C,H,W) back to H×W, then (if `flip`) a
/// random horizontal flip with probability 1/2: the augmentation of the paper's CIFAR runs
/// (`random_flip_left_right`, pad 4, `random_crop`). Offsets and flips come from libtorch's
/// seeded generator.
pub fn crop_flip(x: &Tensor, pad: i64, flip: bool) -> Result<Tensor, tch::TchError> {
    let size = x.size();
    if size.len() != 4 {
        return Err(tch::TchError::Shape(format!("augment_crop_flip expects N,C,H,W images, got {size:?}")));
    }
    let (n, h, w) = (size[0], size[2], size[3]);
    let mut out = if pad > 0 {
        let padded = x.f_constant_pad_nd([pad, pad, pad, pad].as_slice())?;
        let offsets = Tensor::f_randint(2 * pad + 1, [n, 2].as_slice(), (Kind::Int64, tch::Device::Cpu))?;
        let offsets: Vec<i64> = Vec::<i64>::try_from(offsets.f_flatten(0, -1)?)?;
        let crops: Vec<Tensor> = (0..n as usize)
            .map(|i| {
                let (dy, dx) = (offsets[2 * i], offsets[2 * i + 1]);
                padded.f_get(i as i64)?.f_narrow(1, dy, h)?.f_narrow(2, dx, w)
            })
            .collect::<Result<_, _>>()?;
        Tensor::f_stack(&crops, 0)?
    } else {
        x.shallow_clone()
    };
    if flip {
        let mask = Tensor::f_rand([n, 1, 1, 1].as_slice(), (Kind::Float, x.device()))?.f_lt(0.5)?;
        let flipped = out.f_flip([3].as_slice())?;
        out = flipped.f_where_self(&mask, &out)?;
    }
    Ok(out)
}
