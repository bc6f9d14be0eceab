//! `edgesim calibrate`: measure this machine and write its device profile.

use super::CliError;
use crate::exec::calibrate::compute::ComputeResult;
use crate::exec::calibrate::{calibrate, calibrate_cpu, CalibrateOptions, Progress};
use crate::hw::DeviceProfile;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Where to write the profile.
    #[arg(
        long,
        short = 'o',
        default_value = "scenarios/devices/host.json",
        value_name = "FILE"
    )]
    pub out: PathBuf,
    /// Folder for the scratch file: on the disk the weight store will be read from.
    #[arg(long, default_value = "target/edgesim-calibrate", value_name = "DIR")]
    pub scratch_dir: PathBuf,
    /// Scratch file size in MiB [default: 4096; --quick: 64].
    #[arg(long, value_name = "MIB")]
    pub scratch_mib: Option<u64>,
    /// A short, noisy calibration for tests (the profile says so).
    #[arg(long)]
    pub quick: bool,
    /// Re-measure only the `cpu` section (the kernels' compute rates per precision, core
    /// bandwidth, launch cost) of the profile already at --out; everything else in it is kept.
    #[arg(long)]
    pub cpu_only: bool,
}

pub fn run(a: CalibrateArgs) -> Result<(), CliError> {
    let mut options = if a.quick {
        CalibrateOptions::quick(a.scratch_dir.clone())
    } else {
        CalibrateOptions::full(a.scratch_dir.clone())
    };
    if let Some(m) = a.scratch_mib {
        crate::limits::check_count("--scratch-mib", m, crate::limits::MAX_SCRATCH_MIB)
            .map_err(CliError::new)?;
        options.scratch_bytes = m << 20;
    }
    eprintln!(
        "edgesim calibrate: measuring this machine ({}); load average {}",
        if a.quick {
            "quick"
        } else {
            "full, a few minutes"
        },
        crate::validate::load_average().map_or("unknown".into(), |l| format!("{l:.2}"))
    );
    let bars: Mutex<Option<(String, indicatif::ProgressBar)>> = Mutex::new(None);
    let progress = |step: &str, done: u64, total: u64| {
        let mut guard = bars.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|(s, _)| s != step) {
            if let Some((_, b)) = guard.take() {
                b.finish();
            }
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("  {msg:60} {bar:30} {percent:>3}%")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(step.to_string());
            *guard = Some((step.to_string(), b));
        }
        if let Some((_, b)) = guard.as_ref() {
            b.set_length(total);
            b.set_position(done);
        }
    };
    if a.cpu_only {
        let measured = measure_cpu_only(&a, &options, &progress);
        if let Some((_, b)) = bars.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish();
        }
        let (profile, compute) = measured?;
        write_profile(&a.out, &profile)?;
        print_compute(&compute);
        println!(
            "memory: {:.1} GB/s one core; only the cpu section of {} was rewritten",
            profile.cpu[0].core_bandwidth_bytes_per_s.value / 1e9,
            a.out.display()
        );
        return Ok(());
    }
    let c = calibrate(&options, &progress).map_err(CliError::new)?;
    if let Some((_, b)) = bars.lock().unwrap_or_else(|p| p.into_inner()).take() {
        b.finish();
    }
    write_profile(&a.out, &c.profile)?;
    println!(
        "storage ({}): {}",
        c.storage.io_mode.describe(),
        c.storage.table()
    );
    println!(
        "  channels {} , request latency {} ns",
        c.storage.channels, c.storage.latency_ns
    );
    print_compute(&c.compute);
    println!(
        "memory: {:.1} GB/s one core, {:.1} GB/s all cores",
        c.profile.cpu[0].core_bandwidth_bytes_per_s.value / 1e9,
        c.profile.memory.bandwidth_bytes_per_s.value / 1e9
    );
    println!("profile written to {}", a.out.display());
    Ok(())
}

/// `--cpu-only`: the profile at --out with its `cpu` section re-measured.
fn measure_cpu_only(
    a: &CalibrateArgs,
    options: &CalibrateOptions,
    progress: Progress<'_>,
) -> Result<(DeviceProfile, ComputeResult), CliError> {
    let text = std::fs::read_to_string(&a.out).map_err(|e| {
        CliError::new(format!(
            "{}: cannot read the profile to update: {e}",
            a.out.display()
        ))
    })?;
    let profile = crate::scenario::parse_device(&text, &a.out.display().to_string())
        .map_err(|e| CliError::new(e.to_string()))?;
    calibrate_cpu(options, profile, progress).map_err(CliError::new)
}

fn write_profile(out: &Path, profile: &DeviceProfile) -> Result<(), CliError> {
    let mut text = serde_json::to_vec_pretty(profile).map_err(|e| CliError::new(e.to_string()))?;
    text.push(b'\n');
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, text)
        .map_err(|e| CliError::new(format!("{}: cannot write: {e}", out.display())))
}

fn print_compute(compute: &ComputeResult) {
    let c = compute;
    match c.weight_pass_per_s {
        Some(w) => println!("  weight pass {:.1} G weights/s per core", w / 1e9),
        None => println!("  no weight pass term (the points do not support one)"),
    }
    for (p, r) in &c.rates {
        println!("  {p}: {:.2} Gops/s per core", r / 1e9);
    }
    println!(
        "  launch overhead {} ns; fit residual up to {:.1} %",
        c.launch_ns,
        c.max_residual * 100.0
    );
    for pt in &c.points {
        println!(
            "    {} {}x{} batch {}: {:.1} us measured, {:.1} us fitted",
            pt.precision,
            pt.hidden,
            pt.width,
            pt.batch,
            pt.seconds * 1e6,
            c.predict(pt) * 1e6
        );
    }
}
