//! CIFAR-10 loading: the official binary batches and class-folder trees of image files,
//! each either unpacked on disk or packed in a `.tar` / `.tar.gz` archive.
//!
//! Every loader produces a [`Dataset`]: images as 8-bit pixels in the CIFAR binary order
//! (channel planes red, green, blue; rows top to bottom), labels, and class names.

mod archive;
mod binary;
pub mod download;
mod folders;
pub mod locate;
pub mod split;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Width and height of every image, in pixels.
pub const IMAGE_SIDE: usize = 32;
/// Colour channels per image.
pub const CHANNELS: usize = 3;
/// Bytes of one image: three planes of 32 x 32.
pub const IMAGE_BYTES: usize = CHANNELS * IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes in CIFAR-10.
pub const NUM_CLASSES: usize = 10;
/// The CIFAR-10 class names in label order.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Everything that can go wrong while reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: {len} bytes is not a whole number of 3073-byte CIFAR-10 records; \
         the incomplete record starts at byte offset {offset}"
    )]
    TruncatedBatch {
        path: PathBuf,
        len: usize,
        offset: usize,
    },
    #[error(
        "{path}: record {record} (byte offset {offset}) has label {label}; labels go from 0 to 9"
    )]
    BadLabel {
        path: PathBuf,
        record: usize,
        offset: usize,
        label: u8,
    },
    #[error("{path}: image is {width}x{height} pixels; CIFAR-10 images are 32x32")]
    WrongImageSize {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("{path}: not a readable image: {reason}")]
    BadImage { path: PathBuf, reason: String },
    #[error(
        "{path}: unknown class folder '{name}'; expected one of: {}",
        CLASS_NAMES.join(", ")
    )]
    UnknownClass { path: PathBuf, name: String },
    #[error("{path}: class folder '{name}' holds no .jpg, .jpeg or .png images")]
    EmptyClass { path: PathBuf, name: String },
    #[error("{path}: class folder '{name}' is missing; every CIFAR-10 class needs one")]
    MissingClass { path: PathBuf, name: String },
    #[error("{path}: not a gzip or tar archive ({reason})")]
    NotAnArchive { path: PathBuf, reason: String },
    #[error("{path}: the archive is damaged: {reason}")]
    BadArchive { path: PathBuf, reason: String },
    #[error("{path}: batches.meta.txt lists {found} class names; CIFAR-10 has 10")]
    BadMeta { path: PathBuf, found: usize },
    #[error("{path}: no CIFAR-10 {split} set found: {expected}")]
    MissingSplit {
        path: PathBuf,
        split: Split,
        expected: &'static str,
    },
    #[error(
        "{path}: not a CIFAR-10 data set; expected cifar-10-batches-bin/ with data_batch_1..5.bin \
         and test_batch.bin, or train/<class>/ and test/<class>/ folders of images, \
         unpacked or as .tar/.tar.gz"
    )]
    UnknownLayout { path: PathBuf },
}

/// The two halves of CIFAR-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 50,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "training",
            Split::Test => "test",
        })
    }
}

/// Labelled 32x32 RGB images held as bytes, in CIFAR binary pixel order.
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// `len() * IMAGE_BYTES` bytes: per image the red, green and blue planes.
    pub images: Vec<u8>,
    /// One label in `0..NUM_CLASSES` per image.
    pub labels: Vec<u8>,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Pixels are far too many to print; a summary tells two sets apart well enough.
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("class_counts", &self.class_counts())
            .field("first_labels", &&self.labels[..self.len().min(16)])
            .finish()
    }
}

impl Dataset {
    /// An empty data set with the standard class names.
    pub fn empty() -> Self {
        Self {
            images: Vec::new(),
            labels: Vec::new(),
            class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        &self.images[index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES]
    }

    /// A new data set made of the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            images.extend_from_slice(self.image(index));
            labels.push(self.labels[index]);
        }
        Dataset {
            images,
            labels,
            class_names: self.class_names.clone(),
        }
    }

    /// At most `limit` images, drawn so that every class keeps its share (see
    /// [`split::stratified_sample`]); the whole set when `limit` is at least its size.
    pub fn limit(&self, limit: usize, seed: u64) -> Dataset {
        if limit >= self.len() {
            return self.clone();
        }
        let indices = split::stratified_sample(&self.labels, limit, seed);
        self.subset(&indices)
    }

    /// Images per class, in label order.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// Shuffles images and labels together with a seeded generator.
    pub fn shuffle(&mut self, seed: u64) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        *self = self.subset(&order);
    }
}

/// Both halves of CIFAR-10.
#[derive(Debug, Clone)]
pub struct Cifar10 {
    /// The training set.
    pub train: Dataset,
    /// The test set.
    pub test: Dataset,
}

/// Which halves a caller needs; a layout that lacks a wanted half is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Training and test sets.
    Both,
    /// The test set alone (evaluation).
    TestOnly,
}

/// Reads CIFAR-10 from `path`, whatever its layout: a directory holding
/// `cifar-10-batches-bin/` (or the batch files themselves), a directory holding `train/` and
/// `test/` class folders, or a `.tar` / `.tar.gz` archive of either.
pub fn load(path: &Path, wanted: Wanted) -> Result<Cifar10, DataError> {
    let metadata = std::fs::metadata(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parts = if metadata.is_dir() {
        load_directory(path, wanted)?
    } else {
        archive::load(path, wanted)?
    };
    Ok(parts)
}

fn load_directory(path: &Path, wanted: Wanted) -> Result<Cifar10, DataError> {
    if let Some(batches) = binary::find_batch_dir(path) {
        return binary::load_dir(&batches, wanted);
    }
    if let Some(root) = folders::find_root(path) {
        return folders::load_dir(&root, wanted);
    }
    Err(DataError::UnknownLayout {
        path: path.to_path_buf(),
    })
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_keeps_images_with_their_labels() {
        let mut set = Dataset::empty();
        for label in 0..4u8 {
            set.images.extend(std::iter::repeat_n(label, IMAGE_BYTES));
            set.labels.push(label);
        }
        let picked = set.subset(&[3, 1]);
        assert_eq!(picked.labels, vec![3, 1]);
        assert!(picked.image(0).iter().all(|&p| p == 3));
        assert!(picked.image(1).iter().all(|&p| p == 1));
    }
}
