//! Launching an op on its resource: the real work each op does, as a job on the I/O, compute
//! or emulation pool that reports its end over the completion channel.

use super::{bad, request_size, Completion, Content, Executor, State};
use crate::backend::BackendError;
use crate::exec::io::PageBuf;
use crate::exec::store::crypt::{self, CHUNK_BYTES};
use crate::exec::store::layout::{self, align_up, MatrixSpec};
use crate::exec::work::{self, KvLayout};
use crate::model::{TensorKind, TensorRef};
use crate::plan::{Op, OpId, Unit};
use crate::units::Nanos;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A region of the arena handed to a job. Plans order every access (a compute depends on the
/// read that fills its region, an evict on the last use), and the executor refuses to evict or
/// refill a region an op is using, so no two jobs touch the same bytes concurrently unless
/// both only read them.
#[derive(Clone)]
pub(super) struct Slice {
    pub(super) memory: Arc<PageBuf>,
    pub(super) offset: usize,
    pub(super) len: usize,
}

impl Slice {
    /// SAFETY: the caller must hold the region's use as described on [`Slice`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self) -> &mut [u8] {
        std::slice::from_raw_parts_mut(self.memory.as_ptr().add(self.offset), self.len)
    }

    /// SAFETY: as [`Slice::bytes_mut`], for `len` bytes from `at` within the region.
    #[allow(clippy::mut_from_ref)]
    unsafe fn sub_mut(&self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len, "sub-slice inside the region");
        std::slice::from_raw_parts_mut(self.memory.as_ptr().add(self.offset + at), len)
    }

    /// SAFETY: as [`Slice::bytes_mut`], with only readers at the same time.
    unsafe fn bytes(&self) -> &[u8] {
        std::slice::from_raw_parts(self.memory.as_ptr().add(self.offset), self.len)
    }
}

impl Executor {
    pub(super) fn start(&mut self, id: OpId) -> Result<(), BackendError> {
        let now = self.now();
        let (op, servers, emulated) = {
            let e = self.ops.get_mut(&id).expect("op");
            e.state = State::Running;
            e.start = now;
            (e.op, e.servers, e.emulated)
        };
        let tx = self.tx.clone();
        let epoch = self.epoch;
        let send = move |result: Result<(), String>| {
            let end = Nanos(epoch.elapsed().as_nanos() as u64);
            let _ = tx.send(Completion { id, end, result });
        };
        if let Some(duration) = emulated {
            *self
                .emulated
                .entry(match op {
                    Op::WorldSwitch { .. } => "world_switch",
                    Op::NpuHandover { .. } => "npu_handover",
                    _ => "accel_compute",
                })
                .or_default() += 1;
            self.running += 1;
            self.emu_pool.spawn(move || {
                spin_for(Duration::from_nanos(duration.0));
                send(Ok(()));
            });
            return Ok(());
        }
        match op {
            Op::Read {
                tensor,
                precision,
                bytes,
                request_bytes,
            } => {
                let (_, entry) = self.store.entry(tensor, precision).expect("checked");
                let (offset, stored) = (entry.offset, align_up(entry.stored_bytes));
                let sealed = self.store.is_encrypted();
                let live = self.live_of(id, tensor, |l| matches!(l.content, Content::Empty))?;
                if live.busy > 0 {
                    return Err(bad(format!(
                        "op {id} reads into {tensor} while another op uses its memory"
                    )));
                }
                if (live.region.len as u64) < stored {
                    return Err(bad(format!(
                        "op {id} reads {stored} bytes of {tensor} at {precision} into an allocation of {} bytes",
                        live.bytes
                    )));
                }
                live.busy += 1;
                live.content = Content::Loaded { precision, sealed };
                live.writers.push(id);
                let region = live.region;
                self.ops.get_mut(&id).expect("op in table").using = Some(region.offset);
                self.stats.reads += 1;
                self.stats.plan_bytes_read += bytes;
                self.stats.bytes_transferred += stored;
                let size = request_size(request_bytes, bytes);
                let requests: Arc<Vec<(u64, u64)>> = Arc::new(
                    (0..stored.div_ceil(size))
                        .map(|i| (i * size, size.min(stored - i * size)))
                        .collect(),
                );
                let slice = self.slice(region);
                let next = Arc::new(AtomicUsize::new(0));
                let left = Arc::new(AtomicUsize::new(servers as usize));
                let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
                self.running += 1;
                for _ in 0..servers {
                    let (file, requests, slice, next, left, failed, send) = (
                        self.file.clone(),
                        requests.clone(),
                        slice.clone(),
                        next.clone(),
                        left.clone(),
                        failed.clone(),
                        send.clone(),
                    );
                    self.io_pool.spawn(move || {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(at, len)) = requests.get(i) else {
                                break;
                            };
                            // SAFETY: the region is marked busy for this read; requests are disjoint.
                            let buf =
                                unsafe { &mut slice.bytes_mut()[at as usize..(at + len) as usize] };
                            if let Err(e) = file.read_exact_at(buf, offset + at) {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                                    "{}: reading {len} bytes at offset {} for {tensor}: {e}",
                                    file.path().display(),
                                    offset + at
                                ));
                                break;
                            }
                        }
                        if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                            let err = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
                            send(match err {
                                Some(m) => Err(m),
                                None => Ok(()),
                            });
                        }
                    });
                }
            }
            Op::Decrypt {
                tensor,
                threads,
                cluster,
                ..
            } => {
                let key = self
                    .store
                    .key()
                    .cloned()
                    .expect("encrypted store has a key");
                let live = self.live_of(id, tensor, |l| {
                    matches!(l.content, Content::Loaded { sealed: true, .. })
                })?;
                let Content::Loaded {
                    precision,
                    sealed: true,
                } = live.content
                else {
                    return Err(bad(format!("op {id} decrypts {tensor}, which holds no encrypted weights (read it first)")));
                };
                live.busy += 1;
                live.writers.push(id);
                live.content = Content::Loaded {
                    precision,
                    sealed: false,
                };
                let region = live.region;
                self.ops.get_mut(&id).expect("op in table").using = Some(region.offset);
                let (index, entry) = self
                    .store
                    .entry(tensor, precision)
                    .expect("loaded from the store");
                let payload = entry.bytes as usize;
                self.stats.decrypted_bytes += entry.bytes;
                let aad = crypt::associated_data(&entry.tensor, precision.name());
                let slice = self.slice(region);
                self.running += 1;
                let chunks = crypt::chunks(payload as u64) as usize;
                let threads = (threads as usize).max(1);
                self.cpu_pools[cluster as usize].spawn(move || {
                    use rayon::prelude::*;
                    let parts: Vec<std::ops::Range<usize>> = (0..threads)
                        .map(|p| chunks * p / threads..chunks * (p + 1) / threads)
                        .filter(|r| !r.is_empty())
                        .collect();
                    let result = parts
                        .into_par_iter()
                        .map(|range| {
                            let data_start = range.start * CHUNK_BYTES;
                            let data_end = (range.end * CHUNK_BYTES).min(payload);
                            // SAFETY: the region is marked busy for this op; the parts
                            // decrypt disjoint chunks and read disjoint tags.
                            let data = unsafe { slice.sub_mut(data_start, data_end - data_start) };
                            let tags = unsafe {
                                slice.sub_mut(
                                    payload + range.start * crypt::TAG_BYTES,
                                    range.len() * crypt::TAG_BYTES,
                                )
                            };
                            crypt::open_split(&key, index, &aad, data, tags, range.start)
                        })
                        .collect::<Result<(), String>>();
                    send(result.map_err(|m| format!("{tensor}: {m}")));
                });
            }
            Op::Compute {
                tensor,
                precision,
                unit: Unit::Cpu { cluster, threads },
                batch,
                flops,
                kernel,
                ..
            } => {
                if kernel == crate::plan::Kernel::Dequant {
                    // The executor has no llama.cpp kernels: it computes such ops with its LUT
                    // kernels, and says so.
                    *self.emulated.entry("dequant_compute").or_default() += 1;
                }
                let live = self.live_of(
                    id,
                    tensor,
                    |l| matches!(l.content, Content::Loaded { precision: p, .. } if p == precision),
                )?;
                match live.content {
                    Content::Loaded { precision: p, sealed: false } if p == precision => {}
                    Content::Loaded { sealed: true, .. } => {
                        return Err(bad(format!("op {id} computes with {tensor}, whose weights are still encrypted (the plan has no Decrypt before it)")))
                    }
                    Content::Loaded { precision: p, .. } => {
                        return Err(bad(format!("op {id} computes with {tensor} at {precision}, but its memory holds {p} weights")))
                    }
                    Content::Empty => {
                        return Err(bad(format!("op {id} computes with {tensor}, whose memory was never read into")))
                    }
                }
                live.busy += 1;
                let region = live.region;
                self.ops.get_mut(&id).expect("op in table").using = Some(region.offset);
                if let Some(session) = self.model.clone() {
                    let weights = self.slice(region);
                    self.stats.compute_ops += 1;
                    self.running += 1;
                    self.cpu_pools[cluster as usize].spawn(move || {
                        // SAFETY: the region is marked busy (read-only use) for this op.
                        let payload: &[u8] = unsafe { weights.bytes() };
                        let result = session.compute(tensor, batch, precision, payload);
                        send(result.map_err(|m| format!("{tensor} at {precision}: {m}")));
                    });
                    return Ok(());
                }
                let (_, entry) = self.store.entry(tensor, precision).expect("checked");
                let matrices: Vec<MatrixSpec> = entry.matrices.clone();
                let bits = layout::weight_bits(precision).map_err(BackendError::Unsupported)?;
                let weights = self.slice(region);
                let acts = self.activations.clone();
                let g = &self.store.geometry;
                let attention = if tensor.kind == TensorKind::Attention {
                    let params = g.params(tensor.layer as u32, TensorKind::Attention);
                    let b = batch.max(1) as u64;
                    let per = 4 * b * (g.heads * g.head_dim) as u64;
                    let context = flops.saturating_sub(2 * params * b) / per.max(1);
                    let kv_tensor = TensorRef::new(0, TensorKind::KvCache);
                    let kv_live = self
                        .live
                        .get(&kv_tensor)
                        .and_then(|q| q.back())
                        .ok_or_else(|| {
                            bad(format!(
                                "op {id} computes attention, but no KV cache is allocated"
                            ))
                        })?;
                    let per_token = g.kv_bytes_per_token().max(1);
                    let max_context = (kv_live.bytes / per_token) as usize;
                    let attn_layer = (0..tensor.layer as u32)
                        .filter(|&l| !g.is_conv_layer(l))
                        .count();
                    Some((
                        self.slice(kv_live.region),
                        KvLayout {
                            layer: attn_layer,
                            max_context,
                            kv_heads: g.kv_heads as usize,
                            head_dim: g.head_dim as usize,
                        },
                        g.heads as usize,
                        context.saturating_sub(b) as usize,
                    ))
                } else {
                    None
                };
                self.stats.compute_ops += 1;
                self.running += 1;
                let threads = threads as usize;
                self.cpu_pools[cluster as usize].spawn(move || {
                    // SAFETY: the region is marked busy (read-only use) for this op.
                    let payload: &[u8] = unsafe { weights.bytes() };
                    let result = match (tensor.kind, attention) {
                        (TensorKind::Attention, Some((kv_slice, layout, heads, context))) => {
                            // SAFETY: each layer writes its own part of the KV cache, and a
                            // layer's attention ops are ordered by the plan.
                            let kv_bytes = unsafe { kv_slice.bytes_mut() };
                            let kv: &mut [u16] = bytemuck_u16(kv_bytes);
                            work::attention(
                                &matrices,
                                bits,
                                payload,
                                &acts,
                                heads,
                                layout,
                                kv,
                                context,
                                batch as usize,
                                threads,
                            )
                        }
                        (TensorKind::Expert(_) | TensorKind::DenseFfn, _) => {
                            work::ffn(&matrices, bits, payload, &acts, batch as usize, threads)
                        }
                        _ => work::single(&matrices, bits, payload, &acts, batch as usize, threads),
                    };
                    send(result.map_err(|m| format!("{tensor} at {precision}: {m}")));
                });
            }
            Op::Alloc {
                tensor,
                bytes,
                secure: true,
            } => {
                let region = self.alloc(id, tensor, bytes)?;
                let slice = self.slice(region);
                self.running += 1;
                // Secure memory is zeroed before use (what CMA migration and TZASC setup make
                // the TEE do); the host has no secure memory, so this is the real part.
                self.cpu_pools[0].spawn(move || {
                    // SAFETY: the region was just allocated; nothing else refers to it yet.
                    unsafe { slice.bytes_mut() }.fill(0);
                    send(Ok(()));
                });
            }
            other => {
                return Err(bad(format!(
                    "op {id} ({}) cannot be started on a resource",
                    other.kind_name()
                )))
            }
        }
        Ok(())
    }
}

/// Reinterprets page-aligned bytes as fp16 values.
fn bytemuck_u16(bytes: &mut [u8]) -> &mut [u16] {
    let (head, values, _) = unsafe { bytes.align_to_mut::<u16>() };
    debug_assert!(head.is_empty(), "arena regions are page aligned");
    values
}

/// Busy-waits for `d` (sleeping through all but the last 200 us), the stand-in for ops with no
/// host equivalent.
fn spin_for(d: Duration) {
    let until = Instant::now() + d;
    if d > Duration::from_micros(400) {
        std::thread::sleep(d - Duration::from_micros(200));
    }
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}
