//! The training loop: stratified validation split, mini-batch training with a choice of
//! optimizer and learning-rate schedule, optional augmentation, early stopping on validation
//! loss that keeps the best epoch's weights, and a checkpoint after every epoch so that an
//! interrupted run resumes where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{
    AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig, momentum::MomentumConfig,
};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::adadelta::Adadelta;
use crate::data::{CHANNELS, Dataset, IMAGE_BYTES, IMAGE_SIDE, NUM_CLASSES, split};
use crate::model::{ArchSpec, Cnn};

/// The CPU backend that runs the tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-flex: SIMD kernels and threads; the fast default.
    #[default]
    Flex,
    /// burn-ndarray: the plain reference (deprecated upstream; slow convolution backward pass).
    Ndarray,
}

impl Backend {
    /// The device of this backend, without autodiff.
    pub fn device(self) -> Device {
        match self {
            Backend::Flex => Device::flex(),
            // Deprecated upstream, kept as the plain reference the issue asks for.
            #[allow(deprecated)]
            Backend::Ndarray => Device::ndarray(),
        }
    }
}

/// The optimizers `--optimizer` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Keras's Adadelta (rho 0.95, epsilon 1e-7); default learning rate 1.0.
    Adadelta,
    /// Adam (beta 0.9 / 0.999); default learning rate 0.001.
    Adam,
    /// Stochastic gradient descent with momentum 0.9; default learning rate 0.01.
    Sgd,
}

impl OptimizerKind {
    /// The learning rate used when none is given.
    pub fn default_learning_rate(self) -> f64 {
        match self {
            OptimizerKind::Adadelta => 1.0,
            OptimizerKind::Adam => 1e-3,
            OptimizerKind::Sgd => 1e-2,
        }
    }

    /// The optimizer without weight decay.
    pub fn build_default(self) -> ModuleOptimizer {
        self.build(0.0)
    }

    fn build(self, weight_decay: f64) -> ModuleOptimizer {
        let decay = (weight_decay > 0.0)
            .then(|| burn::optim::decay::WeightDecayConfig::new(weight_decay as f32));
        match self {
            OptimizerKind::Adadelta => Adadelta::default().init(),
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            OptimizerKind::Sgd => SgdConfig::new()
                .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
                .with_weight_decay(decay)
                .init(),
        }
    }
}

/// How the learning rate changes during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from the initial rate to zero over `epochs`, updated every batch.
    Cosine,
    /// Halve the rate after every epoch whose validation loss does not improve.
    Plateau,
}

/// Every setting of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Images per mini-batch.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// L2 weight decay (Adam and SGD only); 0 for none.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Epochs without a new best validation loss before stopping.
    pub patience: usize,
    /// Fraction of the training set held out for validation, per class.
    pub validation_split: f64,
    /// Seed of every random choice: initial weights, split, batch order, augmentation.
    pub seed: u64,
    /// Random crops (4-pixel padding) and horizontal flips of training images.
    pub augment: bool,
    /// Standardize each channel with the training set's mean and standard deviation instead
    /// of only scaling pixels to [0, 1].
    pub standardize: bool,
    /// The backend.
    pub backend: Backend,
}

impl TrainConfig {
    /// The tutorial's protocol: Adadelta, batch 32, 20 epochs, validation split 0.2,
    /// patience 1, no augmentation.
    pub fn tutorial() -> Self {
        Self {
            epochs: 20,
            batch_size: 32,
            optimizer: OptimizerKind::Adadelta,
            learning_rate: OptimizerKind::Adadelta.default_learning_rate(),
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            patience: 1,
            validation_split: 0.2,
            seed: 0,
            augment: false,
            standardize: false,
            backend: Backend::Flex,
        }
    }

    /// The best settings measured on this project's 2-core machine for `tutorial-tuned`
    /// (the README gives the runs): Adam with a cosine schedule, augmentation,
    /// standardized inputs, a 0.1 validation split and a patience long enough for the
    /// schedule to play out.
    pub fn improved() -> Self {
        Self {
            epochs: 22,
            batch_size: 64,
            optimizer: OptimizerKind::Adam,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            schedule: Schedule::Cosine,
            patience: 6,
            validation_split: 0.1,
            seed: 0,
            augment: true,
            standardize: true,
            backend: Backend::Flex,
        }
    }

    /// Checks that the settings can train: at least one epoch and image per batch, a
    /// validation split in (0, 1), a positive learning rate.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.batch_size == 0 || self.epochs == 0 {
            bail!("--epochs and --batch-size must be at least 1");
        }
        if !(0.0..1.0).contains(&self.validation_split) || self.validation_split == 0.0 {
            bail!(
                "--val-split {} is outside (0, 1): early stopping needs a validation set",
                self.validation_split
            );
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            bail!("--lr {} must be a positive number", self.learning_rate);
        }
        Ok(())
    }
}

/// How pixels become network inputs: `(pixel / 255 - mean) / std`, per channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each channel, in [0, 1] units.
    pub mean: [f32; CHANNELS],
    /// Standard deviation of each channel, in [0, 1] units.
    pub std: [f32; CHANNELS],
}

impl Normalization {
    /// Scaling to [0, 1] only, as the tutorial did.
    pub fn unit_scale() -> Self {
        Self {
            mean: [0.0; CHANNELS],
            std: [1.0; CHANNELS],
        }
    }

    /// Per-channel statistics of the images of `set` at `indices`.
    pub fn fit(set: &Dataset, indices: &[usize]) -> Self {
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        let mut sum = [0f64; CHANNELS];
        let mut square_sum = [0f64; CHANNELS];
        for &index in indices {
            for (channel, pixels) in set.image(index).chunks_exact(plane).enumerate() {
                for &p in pixels {
                    let v = p as f64 / 255.0;
                    sum[channel] += v;
                    square_sum[channel] += v * v;
                }
            }
        }
        let count = (indices.len() * plane).max(1) as f64;
        let mut norm = Self::unit_scale();
        for c in 0..CHANNELS {
            let mean = sum[c] / count;
            let variance = (square_sum[c] / count - mean * mean).max(1e-12);
            norm.mean[c] = mean as f32;
            norm.std[c] = variance.sqrt() as f32;
        }
        norm
    }

    /// Lookup table from pixel value to input value, per channel.
    pub fn table(&self) -> [[f32; 256]; CHANNELS] {
        let mut table = [[0f32; 256]; CHANNELS];
        for (c, row) in table.iter_mut().enumerate() {
            for (v, slot) in row.iter_mut().enumerate() {
                *slot = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        table
    }
}

/// Turns images into input tensors, optionally augmented.
pub struct Batcher {
    table: [[f32; 256]; CHANNELS],
}

/// Padding of the random crops, in pixels.
const CROP_PADDING: i32 = 4;

impl Batcher {
    /// A batcher applying `norm`.
    pub fn new(norm: &Normalization) -> Self {
        Self {
            table: norm.table(),
        }
    }

    /// Input values of the images at `indices`, `[n, 3, 32, 32]` flattened; with `augment`,
    /// each image is shifted by up to 4 pixels (the uncovered border is black) and mirrored
    /// left to right half the time.
    pub fn pixels(
        &self,
        set: &Dataset,
        indices: &[usize],
        augment: Option<&mut StdRng>,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        let side = IMAGE_SIDE as i32;
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        let mut augment = augment;
        for &index in indices {
            let image = set.image(index);
            let (dx, dy, flip) = match augment.as_deref_mut() {
                Some(rng) => (
                    rng.random_range(-CROP_PADDING..=CROP_PADDING),
                    rng.random_range(-CROP_PADDING..=CROP_PADDING),
                    rng.random_bool(0.5),
                ),
                None => (0, 0, false),
            };
            for (channel, table) in self.table.iter().enumerate() {
                let source = &image[channel * plane..(channel + 1) * plane];
                for y in 0..side {
                    let sy = y + dy;
                    for x in 0..side {
                        let column = if flip { side - 1 - x } else { x };
                        let sx = column + dx;
                        let value = if (0..side).contains(&sy) && (0..side).contains(&sx) {
                            source[(sy * side + sx) as usize]
                        } else {
                            0
                        };
                        out.push(table[value as usize]);
                    }
                }
            }
        }
        out
    }

    /// The images at `indices` as a tensor on `device`.
    pub fn images(
        &self,
        set: &Dataset,
        indices: &[usize],
        augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Tensor<4> {
        let pixels = self.pixels(set, indices, augment);
        let shape = [indices.len(), CHANNELS, IMAGE_SIDE, IMAGE_SIDE];
        Tensor::from_data(TensorData::new(pixels, shape), device)
    }
}

/// The labels at `indices` as an integer tensor.
pub fn labels_tensor(set: &Dataset, indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = indices.iter().map(|&i| set.labels[i] as i64).collect();
    Tensor::from_data(TensorData::new(labels, [indices.len()]), device)
}

/// Figures of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches.
    pub train_loss: f64,
    /// Accuracy over the epoch's training batches (as trained, augmented if so).
    pub train_accuracy: f64,
    /// Mean cross-entropy on the validation set after the epoch.
    pub validation_loss: f64,
    /// Accuracy on the validation set after the epoch.
    pub validation_accuracy: f64,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Wall time of the epoch, validation included.
    pub epoch_seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// Early stopping on validation loss with a patience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs allowed without improvement.
    pub patience: usize,
    /// Lowest validation loss so far.
    pub best_loss: f64,
    /// Epoch (1-based) that reached it; 0 before the first epoch.
    pub best_epoch: usize,
    /// Epochs since the last improvement.
    pub epochs_without_improvement: usize,
}

impl EarlyStopping {
    /// A fresh tracker.
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            best_loss: f64::INFINITY,
            best_epoch: 0,
            epochs_without_improvement: 0,
        }
    }

    /// Records an epoch's validation loss; returns whether it is the best so far.
    pub fn observe(&mut self, epoch: usize, validation_loss: f64) -> bool {
        if validation_loss < self.best_loss {
            self.best_loss = validation_loss;
            self.best_epoch = epoch;
            self.epochs_without_improvement = 0;
            true
        } else {
            self.epochs_without_improvement += 1;
            false
        }
    }

    /// Whether training should stop now: after `patience` epochs in a row without a new
    /// best, as Keras's `EarlyStopping` counts them (patience 1 stops at the first epoch
    /// that does not improve).
    pub fn should_stop(&self) -> bool {
        self.epochs_without_improvement > 0 && self.epochs_without_improvement >= self.patience
    }
}

/// What the checkpoint folder records besides the weights and optimizer state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    config: TrainConfig,
    spec: ArchSpec,
    normalization: Normalization,
    completed_epochs: usize,
    learning_rate: f64,
    history: Vec<EpochRecord>,
    stopping: EarlyStopping,
    finished: bool,
}

/// The files of a training directory.
pub struct RunFiles {
    dir: PathBuf,
}

impl RunFiles {
    /// The files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The best weights (burnpack).
    pub fn best_model(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    fn checkpoint_state(&self) -> PathBuf {
        self.checkpoint_dir().join("state.json")
    }

    fn checkpoint_weights(&self, epoch: usize) -> PathBuf {
        self.checkpoint_dir()
            .join(format!("epoch-{epoch}.model.bpk"))
    }

    fn checkpoint_optimizer(&self, epoch: usize) -> PathBuf {
        self.checkpoint_dir()
            .join(format!("epoch-{epoch}.optimizer.bpk"))
    }
}

/// Saves a module's weights to `path` (which should end in `.bpk`). burn-pack writes a
/// scratch file beside `path` and renames it into place, so the write is atomic.
pub fn save_weights(model: Cnn, path: &Path) -> anyhow::Result<()> {
    model
        .into_record()
        .save(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Loads weights saved by [`save_weights`] into a network of `spec` on `device`.
pub fn load_weights(spec: &ArchSpec, path: &Path, device: &Device) -> anyhow::Result<Cnn> {
    let record = burn::store::ModuleRecord::load(path)
        .map_err(|e| anyhow::anyhow!("{}: not readable weights: {e}", path.display()))?;
    Cnn::new(spec, device).try_load_record(record).map_err(|e| {
        anyhow::anyhow!(
            "{}: weights do not fit the architecture: {e}",
            path.display()
        )
    })
}

/// The result of [`train`].
pub struct Trained {
    /// The best epoch's network, without autodiff.
    pub model: Cnn,
    /// Figures of every epoch run, earlier sessions of a resumed run included.
    pub history: Vec<EpochRecord>,
    /// The 1-based epoch whose weights `model` holds.
    pub best_epoch: usize,
    /// The input normalization the network was trained with.
    pub normalization: Normalization,
    /// Wall time of the training, validation included, over all sessions.
    pub train_seconds: f64,
    /// Images trained on, after the validation split.
    pub train_images: usize,
    /// Images held out for validation.
    pub validation_images: usize,
}

/// Predicted classes and mean cross-entropy of a network on a data set.
pub struct Predictions {
    /// One predicted label per image.
    pub labels: Vec<u8>,
    /// Mean cross-entropy against the true labels.
    pub loss: f64,
    /// Fraction predicted correctly.
    pub accuracy: f64,
}

/// Runs `model` (without autodiff) over every image of `set`.
pub fn predict(
    model: &Cnn,
    set: &Dataset,
    batcher: &Batcher,
    batch_size: usize,
    device: &Device,
) -> Predictions {
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut labels = Vec::with_capacity(set.len());
    let mut loss_sum = 0.0f64;
    for chunk in indices.chunks(batch_size.max(1)) {
        let logits = model.forward(batcher.images(set, chunk, None, device));
        let values = logits
            .into_data()
            .try_to_vec::<f32>()
            .expect("logits are f32");
        for (row, &index) in values.chunks_exact(NUM_CLASSES).zip(chunk) {
            let (best, _) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (c, &v)| if v > acc.1 { (c, v) } else { acc },
                );
            labels.push(best as u8);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_sum = row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln()
                + max;
            loss_sum += log_sum - row[set.labels[index] as usize] as f64;
        }
    }
    let correct = labels
        .iter()
        .zip(&set.labels)
        .filter(|(p, t)| p == t)
        .count();
    Predictions {
        loss: loss_sum / set.len().max(1) as f64,
        accuracy: correct as f64 / set.len().max(1) as f64,
        labels,
    }
}

/// One optimizer step on one batch; returns the updated network, the batch's mean loss and
/// how many of its images the network classified correctly before the step.
pub fn train_step(
    model: Cnn,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    images: Tensor<4>,
    targets: Tensor<1, Int>,
    learning_rate: f64,
) -> (Cnn, f32, usize) {
    let logits = model.forward(images);
    let loss = loss_fn.forward(logits.clone(), targets.clone());
    let hits: i64 = logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(targets)
        .int()
        .sum()
        .into_scalar();
    let batch_loss: f32 = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (
        optimizer.step(learning_rate, model, grads),
        batch_loss,
        hits as usize,
    )
}

/// Options of [`train`] that are not part of the recorded configuration.
pub struct Session<'a> {
    /// Folder of the run: best weights, checkpoint.
    pub dir: &'a Path,
    /// Continue from the checkpoint in `dir`.
    pub resume: bool,
    /// Draw progress bars.
    pub show_progress: bool,
}

fn learning_rate_at(config: &TrainConfig, base: f64, step: usize, total_steps: usize) -> f64 {
    match config.schedule {
        Schedule::Cosine => {
            let progress = step as f64 / total_steps.max(1) as f64;
            base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
        }
        Schedule::Constant | Schedule::Plateau => base,
    }
}

/// Trains a network of `spec` on `set` with `config`.
pub fn train(
    set: &Dataset,
    spec: &ArchSpec,
    config: &TrainConfig,
    session: &Session,
) -> anyhow::Result<Trained> {
    config.validate()?;
    spec.validate()?;
    let files = RunFiles::new(session.dir);
    std::fs::create_dir_all(files.checkpoint_dir())
        .with_context(|| format!("cannot create {}", files.checkpoint_dir().display()))?;

    let (train_indices, validation_indices) =
        split::stratified_split(&set.labels, config.validation_split, config.seed);
    if train_indices.is_empty() || validation_indices.is_empty() {
        bail!(
            "{} images are too few for a validation split of {}",
            set.len(),
            config.validation_split
        );
    }
    let validation = set.subset(&validation_indices);

    let device = config.backend.device();
    device.seed(config.seed);
    let autodiff = device.clone().autodiff();

    let resumed = if session.resume {
        read_checkpoint(&files, spec, config)?
    } else {
        None
    };
    let (mut model, mut optimizer, mut state) = match resumed {
        Some(state) => {
            let epoch = state.completed_epochs;
            let model = load_weights(spec, &files.checkpoint_weights(epoch), &autodiff)?;
            let optimizer = config
                .optimizer
                .build(config.weight_decay)
                .load(files.checkpoint_optimizer(epoch))
                .map_err(|e| {
                    anyhow::anyhow!("{}: {e}", files.checkpoint_optimizer(epoch).display())
                })?;
            tracing::info!("resuming after epoch {epoch} of {}", config.epochs);
            (model, optimizer, state)
        }
        None => {
            let normalization = if config.standardize {
                Normalization::fit(set, &train_indices)
            } else {
                Normalization::unit_scale()
            };
            let state = CheckpointState {
                config: config.clone(),
                spec: spec.clone(),
                normalization,
                completed_epochs: 0,
                learning_rate: config.learning_rate,
                history: Vec::new(),
                stopping: EarlyStopping::new(config.patience),
                finished: false,
            };
            (
                Cnn::new(spec, &autodiff),
                config.optimizer.build(config.weight_decay),
                state,
            )
        }
    };

    let batcher = Batcher::new(&state.normalization);
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
    let batches_per_epoch = train_indices.len().div_ceil(config.batch_size);
    let total_steps = batches_per_epoch * config.epochs;

    while !state.finished && state.completed_epochs < config.epochs {
        let epoch = state.completed_epochs + 1;
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(
            config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64),
        );
        let mut order = train_indices.clone();
        order.shuffle(&mut rng);

        let bar = crate::progress::images_bar(
            order.len() as u64,
            &format!("epoch {epoch}/{}", config.epochs),
            session.show_progress,
        );
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut learning_rate = state.learning_rate;
        for (batch_index, batch) in order.chunks(config.batch_size).enumerate() {
            let step = (epoch - 1) * batches_per_epoch + batch_index;
            learning_rate = learning_rate_at(config, state.learning_rate, step, total_steps);
            let images = batcher.images(set, batch, config.augment.then_some(&mut rng), &autodiff);
            let targets = labels_tensor(set, batch, &autodiff);
            let (updated, batch_loss, hits) = train_step(
                model,
                &mut optimizer,
                &loss_fn,
                images,
                targets,
                learning_rate,
            );
            model = updated;

            loss_sum += batch_loss as f64 * batch.len() as f64;
            correct += hits;
            seen += batch.len();
            bar.inc(batch.len() as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.4}",
                loss_sum / seen as f64,
                correct as f64 / seen as f64
            ));
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();

        let checked = predict(&model.valid(), &validation, &batcher, 256, &device);
        let improved = state.stopping.observe(epoch, checked.loss);
        if improved {
            save_weights(model.valid(), &files.best_model())?;
        }
        if config.schedule == Schedule::Plateau && !improved {
            state.learning_rate *= 0.5;
        }
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            validation_loss: checked.loss,
            validation_accuracy: checked.accuracy,
            learning_rate,
            epoch_seconds: started.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds,
        };
        println!(
            "epoch {epoch:>3}/{}: loss {:.4} acc {:.4} | val_loss {:.4} val_acc {:.4} | lr {:.2e} | {:.1} s ({:.0} images/s){}",
            config.epochs,
            record.train_loss,
            record.train_accuracy,
            record.validation_loss,
            record.validation_accuracy,
            record.learning_rate,
            record.epoch_seconds,
            record.images_per_second,
            if improved { " *best" } else { "" }
        );
        state.history.push(record);
        state.completed_epochs = epoch;
        if state.stopping.should_stop() {
            println!(
                "early stop: validation loss has not improved for {} epochs; keeping epoch {}",
                state.stopping.epochs_without_improvement, state.stopping.best_epoch
            );
            state.finished = true;
        }
        write_checkpoint(&files, &state, &model, &optimizer)?;
    }

    let model = load_weights(spec, &files.best_model(), &device)?;
    Ok(Trained {
        model,
        best_epoch: state.stopping.best_epoch,
        train_seconds: state.history.iter().map(|r| r.epoch_seconds).sum(),
        history: state.history,
        normalization: state.normalization,
        train_images: train_indices.len(),
        validation_images: validation_indices.len(),
    })
}

fn read_checkpoint(
    files: &RunFiles,
    spec: &ArchSpec,
    config: &TrainConfig,
) -> anyhow::Result<Option<CheckpointState>> {
    let path = files.checkpoint_state();
    if !path.exists() {
        tracing::warn!(
            "--resume: no checkpoint in {}; starting from scratch",
            files.dir.display()
        );
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a checkpoint", path.display()))?;
    if state.spec != *spec {
        bail!(
            "{}: the checkpoint was trained with another architecture",
            path.display()
        );
    }
    if state.config != *config {
        let mut wanted = config.clone();
        wanted.epochs = state.config.epochs;
        if wanted != state.config {
            bail!(
                "{}: the checkpoint was trained with other settings; resume with the same \
                 options (only --epochs may change)",
                path.display()
            );
        }
    }
    Ok(Some(CheckpointState {
        config: config.clone(),
        ..state
    }))
}

fn write_checkpoint(
    files: &RunFiles,
    state: &CheckpointState,
    model: &Cnn,
    optimizer: &ModuleOptimizer,
) -> anyhow::Result<()> {
    let epoch = state.completed_epochs;
    save_weights(model.valid(), &files.checkpoint_weights(epoch))?;
    let optimizer_path = files.checkpoint_optimizer(epoch);
    optimizer
        .save(&optimizer_path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", optimizer_path.display()))?;
    // The state file is the commit point: it names the epoch whose files are complete.
    crate::output::write_json(&files.checkpoint_state(), state)?;
    if epoch > 1 {
        for stale in [
            files.checkpoint_weights(epoch - 1),
            files.checkpoint_optimizer(epoch - 1),
        ] {
            let _ = std::fs::remove_file(stale);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_one_stops_at_the_first_epoch_without_improvement() {
        let mut stopping = EarlyStopping::new(1);
        assert!(stopping.observe(1, 1.0));
        assert!(!stopping.should_stop());
        assert!(stopping.observe(2, 0.9));
        assert!(!stopping.should_stop());
        assert!(!stopping.observe(3, 0.9), "equal is not better");
        assert!(stopping.should_stop());
        assert_eq!(stopping.best_epoch, 2);
        assert_eq!(stopping.best_loss, 0.9);
    }

    #[test]
    fn improvement_resets_the_count() {
        let mut stopping = EarlyStopping::new(3);
        for (epoch, loss) in [(1, 2.0), (2, 2.1), (3, 2.2), (4, 1.5), (5, 1.6), (6, 1.7)] {
            stopping.observe(epoch, loss);
            assert!(!stopping.should_stop(), "epoch {epoch}");
        }
        stopping.observe(7, 1.8);
        assert!(stopping.should_stop());
        assert_eq!(stopping.best_epoch, 4);
    }

    #[test]
    fn patience_zero_stops_at_the_first_bad_epoch_only() {
        let mut stopping = EarlyStopping::new(0);
        stopping.observe(1, 1.0);
        assert!(!stopping.should_stop());
        stopping.observe(2, 1.0);
        assert!(stopping.should_stop());
    }

    #[test]
    fn cosine_schedule_falls_from_the_base_rate_to_zero() {
        let config = TrainConfig {
            schedule: Schedule::Cosine,
            ..TrainConfig::tutorial()
        };
        assert_eq!(learning_rate_at(&config, 0.1, 0, 100), 0.1);
        assert!((learning_rate_at(&config, 0.1, 50, 100) - 0.05).abs() < 1e-12);
        assert!(learning_rate_at(&config, 0.1, 100, 100).abs() < 1e-12);
    }

    #[test]
    fn batches_scale_pixels_and_flip_images() {
        let mut set = Dataset::empty();
        let mut image = vec![0u8; IMAGE_BYTES];
        image[0] = 255; // red, top-left
        set.images = image;
        set.labels = vec![0];
        let batcher = Batcher::new(&Normalization::unit_scale());
        let plain = batcher.pixels(&set, &[0], None);
        assert_eq!(plain[0], 1.0);
        assert_eq!(plain[1], 0.0);

        // Over many draws, the bright pixel must land in the mirrored corner, shifted by at
        // most the crop padding, and never elsewhere.
        let mut rng = StdRng::seed_from_u64(3);
        let mut mirrored = false;
        for _ in 0..50 {
            let out = batcher.pixels(&set, &[0], Some(&mut rng));
            let lit: Vec<usize> = (0..1024).filter(|&i| out[i] == 1.0).collect();
            assert!(lit.len() <= 1);
            if let Some(&i) = lit.first() {
                let (y, x) = (i / 32, i % 32);
                assert!(y <= 4, "row {y}");
                assert!(x <= 4 || x >= 27, "column {x}");
                mirrored |= x >= 27;
            }
        }
        assert!(mirrored);
    }

    #[test]
    fn standardization_uses_training_statistics() {
        let mut set = Dataset::empty();
        set.images = [vec![0u8; IMAGE_BYTES], vec![255u8; IMAGE_BYTES]].concat();
        set.labels = vec![0, 1];
        let norm = Normalization::fit(&set, &[0, 1]);
        assert!((norm.mean[0] - 0.5).abs() < 1e-6);
        assert!((norm.std[2] - 0.5).abs() < 1e-6);
    }
}
