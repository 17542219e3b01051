fn main() {
    let v = serde_json::json!({"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [50]}, "sampler": {"epochs": 20}, "temperature": 0.5});
    let n = 2000;
    let t = std::time::Instant::now();
    let mut cfg = None;
    for _ in 0..n {
        cfg = Some(serde_json::from_value::<ablate_grid::CellConfig>(v.clone()).unwrap());
    }
    eprintln!("from_value {:?}", t.elapsed() / n);
    let cfg = cfg.unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = ablate_grid::cell_id(&cfg);
    }
    eprintln!("cell_id {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = cfg.validate();
    }
    eprintln!("validate {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = serde_json::to_value(&cfg).unwrap();
    }
    eprintln!("to_value {:?}", t.elapsed() / n);
    let val = serde_json::to_value(&cfg).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = ablate_grid::canonical_json(&val);
    }
    eprintln!("canonical {:?}", t.elapsed() / n);
}
