//! Scaled-down models: the structure of a real model (layers, experts, top-k, heads) with its
//! matrix dimensions divided by a stated factor, so the executor can run it on a small host.
//!
//! Rules, for a factor `S >= 1` (1 keeps the model as it is):
//!
//! - `hidden`, `ffn` and `moe.dense_ffn` become `dim / S` rounded to the nearest multiple of
//!   64 (the LUT kernels' weight group), at least 64;
//! - `vocab` becomes `vocab / S` rounded to the nearest multiple of 32 (one kernel tile), at
//!   least 32;
//! - `heads` and `kv_heads` become `heads / S` and `kv_heads / S` rounded, at least 1, and
//!   `head_dim` is kept, so attention keeps its per-head work shape (a scaled Mixtral has 4
//!   heads of 128 and 1 KV head instead of 32 and 8); `head_dim` is written out explicitly;
//! - layers, experts, top-k, dense layers, the FFN kind and the router are kept, so a trace
//!   recorded for the full model drives the scaled one unchanged.
//!
//! Every scaled number keeps its original citation and says how it was derived, and the
//! profile's name gets a `-scaled-<S>` suffix, so no report can mistake it for the real model.

use crate::model::ModelProfile;
use crate::sourced::Sourced;

/// The name a model scaled by `scale` goes by: `<name>-scaled-<scale>` (or `<name>` at 1).
pub fn scaled_name(name: &str, scale: u32) -> String {
    if scale == 1 {
        name.to_string()
    } else {
        format!("{name}-scaled-{scale}")
    }
}

fn round_to(value: f64, multiple: u32, at_least: u32) -> u32 {
    let m = multiple as f64;
    (((value / m).round() * m) as u32).max(at_least)
}

fn scaled(s: &Sourced<u32>, scale: u32, multiple: u32, at_least: u32) -> Sourced<u32> {
    let value = round_to(s.value as f64 / scale as f64, multiple, at_least);
    Sourced::new(
        value,
        format!(
            "edgesim exec scale {scale}: {} / {scale} rounded to a multiple of {multiple} (at least {at_least}); original: {}",
            s.value, s.source
        ),
    )
}

/// The model profile `p` with its matrix dimensions divided by `scale` (see the module docs).
pub fn scale_model(p: &ModelProfile, scale: u32) -> Result<ModelProfile, String> {
    if scale == 0 {
        return Err("the scale factor must be at least 1".into());
    }
    if scale == 1 {
        return Ok(p.clone());
    }
    if p.conv_layers.as_ref().is_some_and(|c| !c.value.is_empty()) {
        return Err(format!(
            "model `{}` has short-convolution layers, which the executor cannot run yet",
            p.name
        ));
    }
    let mut out = p.clone();
    out.name = scaled_name(&p.name, scale);
    out.description = format!(
        "{} -- SCALED DOWN by {scale} on the matrix dimensions by `edgesim exec` (hidden, FFN, \
         vocabulary, head width; layers, experts, top-k and heads kept): not the real model's \
         size.",
        p.description
    );
    out.hidden = scaled(&p.hidden, scale, 64, 64);
    out.ffn = scaled(&p.ffn, scale, 64, 64);
    out.vocab = scaled(&p.vocab, scale, 32, 32);
    let head_dim = p.head_dim.clone().unwrap_or_else(|| {
        Sourced::new(
            p.hidden.value / p.heads.value.max(1),
            format!(
            "hidden / heads of the original model ({} / {}), kept by edgesim exec scale {scale}",
            p.hidden.value, p.heads.value
        ),
        )
    });
    out.head_dim = Some(head_dim);
    let heads = |s: &Sourced<u32>| {
        Sourced::new(
            ((s.value as f64 / scale as f64).round() as u32).max(1),
            format!(
                "edgesim exec scale {scale}: {} / {scale} rounded, at least 1; original: {}",
                s.value, s.source
            ),
        )
    };
    out.heads = heads(&p.heads);
    out.kv_heads = heads(&p.kv_heads);
    if !out.heads.value.is_multiple_of(out.kv_heads.value) {
        return Err(format!(
            "scaling `{}` by {scale} gives {} heads and {} KV heads, which do not group evenly; try another scale",
            p.name, out.heads.value, out.kv_heads.value
        ));
    }
    if let Some(moe) = out.moe.as_mut() {
        if let Some(d) = &moe.dense_ffn {
            moe.dense_ffn = Some(scaled(d, scale, 64, 64));
        }
    }
    out.check().map_err(|e| e.join("; "))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelGeometry;

    #[test]
    fn mixtral_scaled_by_8_keeps_its_structure() {
        let p = crate::scenario::load_model("mixtral-8x7b").unwrap();
        let s = scale_model(&p, 8).unwrap();
        let g = ModelGeometry::from_profile(&s).unwrap();
        assert_eq!(s.name, "mixtral-8x7b-scaled-8");
        assert_eq!(
            (g.hidden, g.ffn, g.vocab, g.head_dim),
            (512, 1792, 4000, 128)
        );
        assert_eq!(
            (g.layers, g.experts, g.top_k, g.heads, g.kv_heads),
            (32, 8, 2, 4, 1)
        );
        assert!(s.hidden.source.contains("4096 / 8"));
        assert!(s.description.contains("SCALED DOWN by 8"));
    }

    #[test]
    fn scale_one_is_the_model_and_zero_is_an_error() {
        let p = crate::scenario::load_model("olmoe-1b-7b").unwrap();
        assert_eq!(scale_model(&p, 1).unwrap().name, p.name);
        assert!(scale_model(&p, 0).is_err());
    }
}
