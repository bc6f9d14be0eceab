//! The GGUF reader (`model inspect`, `generate`, `exec prepare --gguf`): header, metadata and
//! tensor table; then every tensor's bytes (and small tensors dequantized), the Llama config
//! and the tokenizer, as loading a model does.
#![no_main]

use edgesim::llm::gguf::GgufFile;
use edgesim::llm::model::LlamaConfig;
use edgesim::llm::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data.to_vec(), "fuzz.gguf") else {
        return;
    };
    let names: Vec<String> = file.tensors().iter().map(|t| t.name.clone()).collect();
    for name in names.iter().take(64) {
        let _ = file.tensor_bytes(name);
        if file.tensor(name).is_some_and(|t| t.element_count() <= 1 << 16) {
            let _ = file.dequantize(name);
        }
    }
    let _ = LlamaConfig::from_gguf(&file);
    if let Ok(tokenizer) = Tokenizer::from_gguf(&file) {
        if let Ok(ids) = tokenizer.encode("Hello, world! 123") {
            let _ = tokenizer.decode(&ids);
        }
    }
});
