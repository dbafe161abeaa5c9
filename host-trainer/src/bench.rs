//! Throughput figures: training images per second at several batch sizes, inference images
//! per second, and optionally the time to load a data set. Images are random bytes, which
//! cost the same to process as real ones.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{Dataset, IMAGE_BYTES, NUM_CLASSES, Wanted};
use crate::model::{ArchSpec, Cnn};
use crate::train::{
    Backend, Batcher, Normalization, OptimizerKind, labels_tensor, predict, train_step,
};

fn random_set(images: usize) -> Dataset {
    let mut rng = StdRng::seed_from_u64(0);
    let mut set = Dataset::empty();
    set.images = (0..images * IMAGE_BYTES).map(|_| rng.random()).collect();
    set.labels = (0..images)
        .map(|_| rng.random_range(0..NUM_CLASSES as u8))
        .collect();
    set
}

/// Prints the figures; `images` is the number of images each measurement runs.
pub fn run(
    spec: &ArchSpec,
    batch_sizes: &[usize],
    images: usize,
    backend: Backend,
    data: Option<&Path>,
) -> anyhow::Result<()> {
    if images == 0 {
        anyhow::bail!("--images 0: each measurement needs at least one image");
    }
    if batch_sizes.is_empty() || batch_sizes.contains(&0) {
        anyhow::bail!("--batch-sizes {batch_sizes:?}: every batch size must be at least 1");
    }
    let threads = rayon::current_num_threads();
    println!("model: {}", spec.summary());
    println!("backend {backend:?}, {threads} threads");
    if let Some(path) = data {
        let started = Instant::now();
        let cifar = crate::data::load(path, Wanted::Both)?;
        println!(
            "load: {} images from {} in {:.2} s",
            cifar.train.len() + cifar.test.len(),
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }

    let largest = batch_sizes.iter().copied().max().unwrap_or(1).max(1);
    let set = random_set(images.max(largest));
    let batcher = Batcher::new(&Normalization::unit_scale());
    let device = backend.device();
    device.seed(0);
    let autodiff = device.clone().autodiff();
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);

    for &batch_size in batch_sizes {
        let mut model = Cnn::new(spec, &autodiff);
        let mut optimizer = OptimizerKind::Adam.build_default();
        let indices: Vec<usize> = (0..set.len()).collect();
        let batches: Vec<&[usize]> = indices.chunks_exact(batch_size.max(1)).collect();
        let step = |model: Cnn, optimizer: &mut _, batch: &[usize]| {
            let x = batcher.images(&set, batch, None, &autodiff);
            let y = labels_tensor(&set, batch, &autodiff);
            train_step(model, optimizer, &loss_fn, x, y, 1e-3).0
        };
        model = step(model, &mut optimizer, batches[0]);
        let started = Instant::now();
        let mut trained = 0;
        for batch in &batches {
            model = step(model, &mut optimizer, batch);
            trained += batch.len();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "train  batch {batch_size:>4}: {:>8.1} images/s ({trained} images in {seconds:.2} s)",
            trained as f64 / seconds
        );
    }

    let model = Cnn::new(spec, &device).valid();
    for batch_size in [1usize, 256] {
        let subset = set.subset(
            &(0..images.min(if batch_size == 1 { 512 } else { images })).collect::<Vec<_>>(),
        );
        let _ = predict(&model, &subset.subset(&[0]), &batcher, batch_size, &device);
        let started = Instant::now();
        predict(&model, &subset, &batcher, batch_size, &device);
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "infer  batch {batch_size:>4}: {:>8.1} images/s ({} images in {seconds:.2} s)",
            subset.len() as f64 / seconds,
            subset.len()
        );
    }
    Ok(())
}
