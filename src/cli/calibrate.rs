//! `edgesim calibrate`: measure this machine and write its device profile.
use super::CliError;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Where to write the profile.
    #[arg(long, short = 'o', default_value = "scenarios/devices/host.json", value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(_a: CalibrateArgs) -> Result<(), CliError> {
    Err(CliError::new("not yet"))
}
