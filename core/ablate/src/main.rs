fn main() {
    let t = ablate_engine::tch::Tensor::from_slice(&[1.0f32, 2.0]);
    eprintln!("{}", t.sum(ablate_engine::tch::Kind::Float));
}
