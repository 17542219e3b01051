//! `manifest.json`: how, where and with what a run was made.

use serde::{Deserialize, Deserializer, Serialize};

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The grid file as given on the command line.
    pub grid_file: String,
    /// Hex SHA-256 of the grid file's bytes.
    pub grid_sha256: String,
    pub ablate_version: String,
    /// `git rev-parse HEAD` of the source tree, when known.
    pub git_revision: Option<String>,
    pub libtorch_version: Option<String>,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    pub plugins: Vec<PluginInfo>,
    pub machine: MachineInfo,
    /// RFC 3339 UTC.
    pub created: String,
    /// The command line that made the run.
    #[serde(deserialize_with = "command_text")]
    pub command: String,
    /// The working folder it ran in (relative paths in `command` and the grid are read from
    /// there); `None` in older run folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// A plugin library loaded by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

/// The machine a run was made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub hostname: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// `PRETTY_NAME` of /etc/os-release, or the OS family.
    pub os: String,
}

impl MachineInfo {
    /// This machine.
    pub fn current() -> MachineInfo {
        MachineInfo {
            hostname: hostname(),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            os: os_name(),
        }
    }
}

/// The host name (from /proc/sys/kernel/hostname, else `$HOSTNAME`, else "unknown").
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| std::env::consts::OS.to_owned())
}

/// `command`: a string (what `ablate` writes) or an argv array (older or hand-made manifests),
/// read as one string (an array joined with spaces).
fn command_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Command {
        Text(String),
        Argv(Vec<String>),
    }
    Ok(match Command::deserialize(d)? {
        Command::Text(s) => s,
        Command::Argv(parts) => parts.join(" "),
    })
}
