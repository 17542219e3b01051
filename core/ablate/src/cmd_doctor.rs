//! `ablate doctor`: what this binary is linked against and what it finds.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    plugins: crate::PluginDirs,
}

pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    use crate::common;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("ablate {}", common::VERSION);
    println!("  git revision      {}", common::git_revision().unwrap_or_else(|| "(unknown)".into()));
    println!("  binary            {}", std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default());
    println!("libtorch");
    println!("  version           {} (tch 0.24.0 binds libtorch 2.11.0)", common::libtorch_version());
    println!(
        "  library folder    {}",
        common::libtorch_lib().unwrap_or("(unknown: torch-sys gave no path at build time)")
    );
    println!("  threads           {} (cores available: {})", tch::get_num_threads(), common::cores());
    println!("  MKL               {}", yes_no(tch::utils::has_mkl()));
    println!("  OpenMP            {}", yes_no(tch::utils::has_openmp()));
    println!("  built with CUDA   {}", yes_no(tch::utils::has_cuda()));
    println!("  CUDA runtime      {}", yes_no(tch::utils::has_cudart()));
    let cuda = tch::Cuda::is_available();
    println!("  cuda: {cuda}");
    if cuda {
        println!("  GPUs              {}", tch::Cuda::device_count());
        println!("  cuDNN             {}", yes_no(tch::Cuda::cudnn_is_available()));
    } else {
        println!(
            "  (no CUDA: {}; --device auto uses the CPU)",
            if tch::utils::has_cuda() { "no GPU visible" } else { "this libtorch has no CUDA part loaded" }
        );
    }
    println!("precision (the cell setting: fp32, tf32, bf16)");
    let devices = std::iter::once(tch::Device::Cpu).chain(cuda.then_some(tch::Device::Cuda(0)));
    for device in devices {
        match ablate_engine::compute::probe(device) {
            Ok(what) => println!("  {:<17} {what}", ablate_engine::device::name(device)),
            Err(e) => println!("  {:<17} error: {e}", ablate_engine::device::name(device)),
        }
    }

    println!("plugins");
    let search = ablate_plugin_host::SearchPath::standard(&args.plugins.dirs);
    if search.dirs.is_empty() {
        println!("  searched          (no folder exists)");
    }
    for (dir, why) in &search.dirs {
        println!("  searched          {} ({why})", dir.display());
    }
    match ablate_plugin_host::Registry::load(&search) {
        Ok(registry) => {
            for lib in registry.libraries() {
                println!("  library           {} [{}] sha256 {}", lib.path.display(), lib.build, &lib.sha256[..16]);
            }
            let names: Vec<String> = registry.factories().map(|f| format!("{} {}", f.kind.as_str(), f.name)).collect();
            println!("  factories         {}", if names.is_empty() { "(none)".into() } else { names.join(", ") });
        }
        Err(e) => println!("  error             {e}"),
    }

    println!("data");
    match ablate_data::cache_root() {
        Ok(root) => println!("  cache root        {}", root.display()),
        Err(e) => println!("  cache root        unknown: {e}"),
    }
    for d in ablate_data::list() {
        println!(
            "  {:<17} {}",
            d.name,
            if d.cached { "available" } else { "not fetched (`ablate data fetch` or a path)" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
