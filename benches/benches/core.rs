//! Per-image latency of one `tutorial-tuned` network on four paths, batch 1, one thread, in
//! one criterion group so the ratios come from one run: the core's int8 path, its f32 path,
//! and burn's float inference on burn-flex and on burn-ndarray.
//!
//! The network has the trainer's random initial weights (speed does not depend on their
//! values), quantized with activation ranges calibrated on 64 random images.

use benches::random_set;
use burn::module::Module;
use burn::prelude::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use host_trainer::export::FloatNet;
use host_trainer::model::{ArchSpec, Cnn};
use host_trainer::quant::{RangeMethod, calibrate, int8_model};
use host_trainer::train::{Batcher, Normalization};

fn per_image(c: &mut Criterion) {
    // One thread for burn too: its CPU backends run on rayon's global pool.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("the global pool is built once, before any other rayon use");

    let spec = ArchSpec::preset("tutorial-tuned").expect("a preset");
    let normalization = Normalization::unit_scale();
    let flex = Cnn::new(&spec, &Device::flex()).valid();
    let net = FloatNet::from_cnn(&flex, &normalization).expect("the network exports");
    let f32_file = net.to_f32_model().expect("an f32 model file");
    let set = random_set(64);
    let images: Vec<&[u8]> = (0..set.len()).map(|i| set.image(i)).collect();
    let ranges = calibrate(&net, &images, RangeMethod::MinMax).expect("calibration");
    let int8_file = int8_model(&net, &ranges).expect("an int8 model file");
    #[allow(deprecated)]
    let ndarray_device = Device::ndarray();
    let ndarray = flex.clone().to_device(&ndarray_device);

    let f32_model = core_nostd::Model::parse(&f32_file).expect("the f32 model parses");
    let int8_model = core_nostd::Model::parse(&int8_file).expect("the int8 model parses");
    let mut arena = vec![0u32; f32_model.arena_bytes().div_ceil(4)];
    let arena: &mut [u8] = bytemuck::cast_slice_mut(arena.as_mut_slice());
    let batcher = Batcher::new(&normalization);
    let pixels = set.image(0);

    let mut group = c.benchmark_group("tutorial-tuned per image (batch 1, 1 thread)");
    group.throughput(Throughput::Elements(1));
    group.bench_function("core-nostd int8", |b| {
        b.iter(|| int8_model.classify(pixels, arena).expect("inference"))
    });
    group.bench_function("core-nostd f32", |b| {
        b.iter(|| f32_model.classify(pixels, arena).expect("inference"))
    });
    for (name, model, device) in [
        ("burn-flex f32", &flex, Device::flex()),
        ("burn-ndarray f32", &ndarray, ndarray_device.clone()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let logits = model.forward(batcher.images(&set, &[0], None, &device));
                logits.into_data()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_image);
criterion_main!(benches);
