//! `strata-lab`: a local lab of real Debian nodes for strata's end-to-end tests and try-it.
//! Test tooling, not part of the product: `cargo install strata` installs `strata` alone.

mod apt_repo;
mod bare;
mod base;
mod inventory;
mod lab;
mod net;
mod node;
mod sys;

use clap::{Args, Parser, Subcommand};
use inventory::{Release, ReleaseChoice};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "strata-lab",
    version,
    about = "Local lab of real Debian nodes (systemd-nspawn) for strata's tests"
)]
struct Cli {
    /// The infra repository whose inventory/lab.yaml and .lab/ the lab writes.
    #[arg(long, global = true, default_value = ".")]
    repo: PathBuf,
    #[command(subcommand)]
    command: LabCmd,
}

#[derive(Subcommand, Debug, Clone)]
pub enum LabCmd {
    /// Build the base (cached) and boot N nodes validator-1..N.
    Up(LabUp),
    /// Stop every lab node, unmount, remove node state (keeps the base cache).
    Down,
    /// Show the lab's nodes and whether they answer.
    Status,
    /// Return nodes to their fresh state (a bare node to bare), booted in batches like `up`.
    Reset {
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Boot them fresh on this Debian release (bookworm or trixie) instead of their own.
        #[arg(long, value_name = "RELEASE", value_parser = parse_release)]
        release: Option<Release>,
    },
    /// Stop a node as a host dies (its state kept): its peers see it go.
    Stop { node: String },
    /// Boot a stopped node again, with the state it had.
    Start { node: String },
    /// Attach a small ext4 disk to a running node (until it stops), like a cloud volume.
    Disk(LabDisk),
    /// Boot one more node next to the running lab (the next free index).
    Add(LabAdd),
}

#[derive(Args, Debug, Clone)]
pub struct LabAdd {
    /// The node's name (at most 12 characters: its interface is ve-NAME).
    pub name: String,
    /// Like a fresh host from a provider: root by key only, password login on in sshd, no
    /// deploy user, none of the modules' packages; left out of inventory/lab.yaml and
    /// .lab/known_hosts (add it with `strata node add`, verify its host key at bootstrap).
    #[arg(long)]
    pub bare: bool,
    /// Its Debian release: bookworm (12, the default) or trixie (13).
    #[arg(long, value_name = "RELEASE", value_parser = parse_release)]
    pub release: Option<Release>,
}

#[derive(Args, Debug, Clone)]
pub struct LabDisk {
    pub node: String,
    /// Its size in MiB.
    #[arg(long, default_value_t = 32)]
    pub mib: u32,
    /// Where it is mounted in the node.
    #[arg(long, default_value = "/srv/lab-disk")]
    pub at: String,
}

#[derive(Args, Debug, Clone)]
pub struct LabUp {
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The nodes' Debian release: bookworm (12), trixie (13), or mixed (odd nodes bookworm,
    /// even nodes trixie). Given, a running node of another release is booted fresh on the
    /// asked one; left out, running nodes keep theirs and new ones are bookworm.
    #[arg(long, value_name = "RELEASE", value_parser = ReleaseChoice::parse)]
    pub release: Option<ReleaseChoice>,
}

fn parse_release(s: &str) -> Result<Release, String> {
    match ReleaseChoice::parse(s)? {
        ReleaseChoice::All(r) => Ok(r),
        ReleaseChoice::Mixed => Err("one node has one release: bookworm or trixie".into()),
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match lab::run(&cli.repo, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    };
    std::process::exit(code);
}
