//! Throughput of the trainer's hot paths for `tutorial-tuned` on burn-flex: loading the
//! shared JPEG archive, one training step at batch 32 and 128, and batched inference.
//! Criterion reports time per iteration and images per second.

use std::path::Path;

use benches::random_set;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use host_trainer::data::{self, Wanted};
use host_trainer::model::{ArchSpec, Cnn};
use host_trainer::train::{Batcher, Normalization, OptimizerKind, labels_tensor, train_step};

const SHARED_JPEG: &str = "../../shared/data/cifar10/cifar10-jpeg.tar.gz";

fn loading(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SHARED_JPEG);
    if !path.exists() {
        eprintln!(
            "{} not found: skipping the loading benchmark",
            path.display()
        );
        return;
    }
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.throughput(Throughput::Elements(60_000));
    group.bench_function("cifar10-jpeg.tar.gz (60,000 images)", |b| {
        b.iter(|| data::load(&path, Wanted::Both).expect("the shared archive loads"))
    });
    group.finish();
}

fn training(c: &mut Criterion) {
    let spec = ArchSpec::preset("tutorial-tuned").expect("a preset");
    let device = Device::flex();
    let autodiff = device.clone().autodiff();
    let set = random_set(128);
    let batcher = Batcher::new(&Normalization::unit_scale());
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);

    let mut group = c.benchmark_group("train step tutorial-tuned flex");
    group.sample_size(10);
    for batch_size in [32usize, 128] {
        let indices: Vec<usize> = (0..batch_size).collect();
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &indices,
            |b, indices| {
                let mut model = Some(Cnn::new(&spec, &autodiff));
                let mut optimizer = OptimizerKind::Adam.build_default();
                b.iter(|| {
                    let x = batcher.images(&set, indices, None, &autodiff);
                    let y = labels_tensor(&set, indices, &autodiff);
                    let current = model.take().expect("the model is put back every iteration");
                    model = Some(train_step(current, &mut optimizer, &loss_fn, x, y, 1e-3).0);
                })
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("inference tutorial-tuned flex");
    group.sample_size(10);
    let model = Cnn::new(&spec, &device).valid();
    for batch_size in [1usize, 128] {
        let indices: Vec<usize> = (0..batch_size).collect();
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &indices,
            |b, indices| {
                b.iter(|| {
                    let logits = model.forward(batcher.images(&set, indices, None, &device));
                    logits.into_data()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, loading, training);
criterion_main!(benches);
