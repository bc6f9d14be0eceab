//! Validation on the real model: when the weight store holds a real model's neuron clusters
//! (`edgesim exec prepare --gguf`), every measured run computes SmolLM2's forward pass from the
//! bytes its policy loaded, and its output is checked against two in-memory runs
//! ([`crate::exec::model::quality`]).

use crate::compare::Prepared;
use crate::exec::model::{
    dense_reference, in_memory_sparse, ModelSession, PassOutput, Quality, RecordedRun,
};
use crate::exec::store::layout::weight_bits;
use crate::exec::store::WeightStore;
use crate::llm::format::WeightFormat;
use crate::llm::model::{load_model, LlamaModel};
use crate::model::Precision;
use crate::trace::{ForwardPass, PassGrouper};
use std::path::Path;
use std::sync::Arc;

/// What every measured run of a real-model validation shares.
pub struct RealModel {
    /// The model's attention and head (its FFN matrices dropped: they are offloaded).
    pub model: Arc<LlamaModel>,
    pub run: Arc<RecordedRun>,
    /// The dense model's greedy choice after every recorded token.
    pub dense: Vec<u32>,
    /// The in-memory sparse run of every pass.
    pub in_memory: Vec<PassOutput>,
    /// Weight format of the in-process attention and head.
    pub format: String,
    pub model_file: String,
}

/// The LUT format whose bits match the experiment's resident precision.
fn format_for(precision: Precision) -> Result<WeightFormat, String> {
    let bits = weight_bits(precision)?.bits() as u8;
    WeightFormat::lut(bits).map_err(|e| e.to_string())
}

impl RealModel {
    /// Loads the model the store was made from and computes both references. `None` when the
    /// store is not a real-model store.
    pub fn for_store(store: &WeightStore, p: &Prepared) -> Result<Option<RealModel>, String> {
        let Some(file) = store.index.model_file.clone() else {
            return Ok(None);
        };
        let at = |m: String| format!("{}: {m}", store.dir.display());
        if store.index.neuron_cluster.is_none() {
            return Err(at(
                "names a model file but holds no neuron clusters (prepare it again with --gguf)"
                    .into(),
            ));
        }
        if let Some(want) = &store.index.model_file_sha256 {
            let got = crate::llm::fetch::sha256_file(Path::new(&file)).map_err(|e| {
                at(format!(
                    "its model file {file}: {e} (prepare the store again)"
                ))
            })?;
            if &got != want {
                return Err(at(format!(
                    "its model file {file} is not the file the store was made from (SHA-256 {got}, the index says {want}): prepare the store again from this file"
                )));
            }
        }
        let workload = p.single_workload()?;
        let mut stream = workload.trace.open().map_err(|e| e.to_string())?;
        let run = RecordedRun::read(&mut stream, &workload.trace.name())?;
        let builder = format_for(p.experiment.resident_precision)?
            .builder()
            .map_err(|e| e.to_string())?;
        let (_, loaded) = load_model(Path::new(&file), builder.as_ref()).map_err(|e| {
            at(format!(
                "its model file {file}: {e} (run `edgesim model fetch smollm2`, or prepare the store again)"
            ))
        })?;
        let dense = dense_reference(&loaded, &run)?;
        let format_name = loaded.format().to_string();
        let model = Arc::new(loaded.without_ffn());
        let run = Arc::new(run);
        let session = ModelSession::new(model.clone(), run.clone())?;
        let passes = grouped_passes(p)?;
        let in_memory = in_memory_sparse(&session, store, p.experiment.offload_precision, &passes)?;
        Ok(Some(RealModel {
            model,
            run,
            dense,
            in_memory,
            format: format_name,
            model_file: file,
        }))
    }

    /// A fresh session for one measured run.
    pub fn session(&self) -> Result<Arc<ModelSession>, String> {
        Ok(Arc::new(ModelSession::new(
            self.model.clone(),
            self.run.clone(),
        )?))
    }

    /// The run's outputs against the references.
    pub fn quality(&self, session: &ModelSession) -> Quality {
        Quality::compare(&self.run, &session.outputs(), &self.in_memory, &self.dense)
    }
}

/// The trace's passes, grouped as the replay groups them.
fn grouped_passes(p: &Prepared) -> Result<Vec<ForwardPass>, String> {
    let chunk = p.prefill_chunk();
    let reader = p
        .single_workload()?
        .trace
        .open()
        .map_err(|e| e.to_string())?;
    PassGrouper::new(reader, chunk as usize)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}
