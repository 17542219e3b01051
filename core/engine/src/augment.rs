//! Image augmentation kernels offered to likelihood plugins.

use tch::{Kind, Tensor};

/// Random per-example crop of zero-padded images (N,C,H,W) back to H×W, then (if `flip`) a
/// random horizontal flip with probability 1/2: the augmentation of the paper's CIFAR runs
/// (`random_flip_left_right`, pad 4, `random_crop`). Offsets and flips come from libtorch's
/// seeded generator.
///
/// Off the CPU the crop is two `gather`s (rows, then columns) with per-example index tensors, so
/// its cost in operator calls does not grow with N: cutting N views out of the padded batch and
/// stacking them costs 8 host calls per image (17,450 for the 2176 images of 17 batched
/// ResNet-20 chains, against 66), which a GPU step pays in host time. On the CPU the per-image
/// cut is the faster of the two (47 against 66 ms for those 2176 images, release build, 2
/// cores) and stays, unless the fused CPU paths are off (`ABLATE_UNFUSED=1`, the GPU's code
/// path). Both give the same values to the bit, from the same draws (see the tests).
pub fn crop_flip(x: &Tensor, pad: i64, flip: bool) -> Result<Tensor, tch::TchError> {
    let size = x.size();
    if size.len() != 4 {
        return Err(tch::TchError::Shape(format!("augment_crop_flip expects N,C,H,W images, got {size:?}")));
    }
    let mut out = if pad == 0 {
        x.shallow_clone()
    } else {
        let (n, h, w) = (size[0], size[2], size[3]);
        let padded = x.f_constant_pad_nd([pad, pad, pad, pad].as_slice())?;
        // (dy, dx) ∈ [0, 2·pad]² per image, from libtorch's CPU generator whichever form cuts.
        let offsets = Tensor::f_randint(2 * pad + 1, [n, 2].as_slice(), (Kind::Int64, tch::Device::Cpu))?;
        if x.device() == tch::Device::Cpu && crate::fused::enabled() {
            cut_per_image(&padded, &offsets, h, w)?
        } else {
            gather_crop(&padded, &offsets.f_to(x.device())?, h, w)?
        }
    };
    if flip {
        let mask = Tensor::f_rand([size[0], 1, 1, 1].as_slice(), (Kind::Float, x.device()))?.f_lt(0.5)?;
        let flipped = out.f_flip([3].as_slice())?;
        out = flipped.f_where_self(&mask, &out)?;
    }
    Ok(out)
}

/// The h×w window of each padded image at its offset: out[i, c, r, s] = padded[i, c, dyᵢ + r,
/// dxᵢ + s], with `offsets` [N, 2] of (dy, dx) on `padded`'s device.
fn gather_crop(padded: &Tensor, offsets: &Tensor, h: i64, w: i64) -> Result<Tensor, tch::TchError> {
    let size = padded.size();
    let (n, c, padded_w) = (size[0], size[1], size[3]);
    let device = padded.device();
    let index = |column: i64, len: i64| -> Result<Tensor, tch::TchError> {
        let start = offsets.f_select(1, column)?.f_unsqueeze(1)?;
        start.f_add(&Tensor::f_arange(len, (Kind::Int64, device))?.f_unsqueeze(0)?)
        // [N, len]
    };
    let rows = index(0, h)?.f_view([n, 1, h, 1].as_slice())?.f_expand([n, c, h, padded_w].as_slice(), false)?;
    let cols = index(1, w)?.f_view([n, 1, 1, w].as_slice())?.f_expand([n, c, h, w].as_slice(), false)?;
    padded.f_gather(2, &rows, false)?.f_gather(3, &cols, false)
}

/// [`gather_crop`] as one view per image, stacked (`offsets` on the CPU).
fn cut_per_image(padded: &Tensor, offsets: &Tensor, h: i64, w: i64) -> Result<Tensor, tch::TchError> {
    let offsets: Vec<i64> = Vec::<i64>::try_from(offsets.f_flatten(0, -1)?)?;
    let crops: Vec<Tensor> = (0..offsets.len() / 2)
        .map(|i| padded.f_get(i as i64)?.f_narrow(1, offsets[2 * i], h)?.f_narrow(2, offsets[2 * i + 1], w))
        .collect::<Result<_, _>>()?;
    Tensor::f_stack(&crops, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gathered_crop_equals_the_per_image_cut_bit_for_bit() {
        for (shape, pad) in [([7, 3, 8, 8], 4), ([5, 1, 6, 9], 2), ([3, 2, 4, 4], 1)] {
            let x = Tensor::randn(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
            let padded = x.constant_pad_nd([pad, pad, pad, pad].as_slice());
            let offsets = Tensor::randint(2 * pad + 1, [shape[0], 2].as_slice(), (Kind::Int64, tch::Device::Cpu));
            let (h, w) = (shape[2], shape[3]);
            let expected = cut_per_image(&padded, &offsets, h, w).unwrap();
            let got = gather_crop(&padded, &offsets, h, w).unwrap();
            assert_eq!(got.size(), x.size());
            assert!(got.equal(&expected), "{shape:?} pad {pad}");
        }
    }

    #[test]
    fn every_offset_occurs_and_the_padding_is_zeros() {
        // A 1×1 image of ones padded by 2 and cut back to 1×1: the result is 1 exactly when the
        // offset is (2, 2), the centre, of 25 equally likely offsets.
        let x = Tensor::ones([20_000, 1, 1, 1].as_slice(), (Kind::Float, tch::Device::Cpu));
        tch::manual_seed(3);
        let out = crop_flip(&x, 2, false).unwrap();
        let ones = out.sum(Kind::Double).double_value(&[]);
        let zeros = out.eq(0.0).sum(Kind::Double).double_value(&[]);
        assert_eq!(ones + zeros, 20_000.0, "values other than 0 and 1");
        // Binomial(20000, 1/25): mean 800, sd 27.7; 5 sd.
        assert!((ones - 800.0).abs() < 5.0 * 27.7, "centre offset drawn {ones} times of 20000");
    }

    #[test]
    fn a_flip_without_padding_mirrors_about_half_the_images() {
        let x = Tensor::arange(4, (Kind::Float, tch::Device::Cpu)).view([1, 1, 1, 4]).repeat([4000, 1, 1, 1]);
        tch::manual_seed(5);
        let out = crop_flip(&x, 0, true).unwrap();
        let mirrored = out.select(3, 0).eq(3.0).sum(Kind::Double).double_value(&[]);
        let kept = out.select(3, 0).eq(0.0).sum(Kind::Double).double_value(&[]);
        assert_eq!(mirrored + kept, 4000.0);
        // Binomial(4000, 1/2): sd 31.6; 5 sd.
        assert!((mirrored - 2000.0).abs() < 5.0 * 31.6, "{mirrored} of 4000 flipped");
        assert!(crop_flip(&Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu)), 1, true).is_err());
    }
}
