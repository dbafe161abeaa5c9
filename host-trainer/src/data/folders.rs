//! Class-folder trees: `train/<class>/*.jpg|png` and `test/<class>/*.jpg|png`, where
//! `<class>` is one of the ten CIFAR-10 class names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{
    CHANNELS, CLASS_NAMES, Cifar10, DataError, Dataset, IMAGE_BYTES, IMAGE_SIDE, Split, Wanted,
};

/// One encoded image file, not yet decoded.
pub struct EncodedImage {
    /// Where it came from, for error messages (inside an archive: `archive.tar.gz:train/cat/1.jpg`).
    pub path: PathBuf,
    /// Its label.
    pub label: u8,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// The image files of one split, grouped by class folder name.
#[derive(Default)]
pub struct SplitFiles {
    /// Class folder name to its images; a folder with no image maps to an empty list.
    pub classes: BTreeMap<String, Vec<(PathBuf, Vec<u8>)>>,
}

/// Whether a file name has an image extension this loader decodes.
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png")
}

/// The folder holding `train/` or `test/`: `path` itself, or its only subfolder.
pub fn find_root(path: &Path) -> Option<PathBuf> {
    let holds_splits = |dir: &Path| dir.join("train").is_dir() || dir.join("test").is_dir();
    if holds_splits(path) {
        return Some(path.to_path_buf());
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match subdirs.as_slice() {
        [only] if holds_splits(only) => Some(only.clone()),
        _ => None,
    }
}

/// Reads the class folders under `root`.
pub fn load_dir(root: &Path, wanted: Wanted) -> Result<Cifar10, DataError> {
    let train = match wanted {
        Wanted::Both => decode_split(
            root,
            &root.join("train"),
            Split::Train,
            read_split(root, "train")?,
        )?,
        Wanted::TestOnly => Dataset::empty(),
    };
    let test = decode_split(
        root,
        &root.join("test"),
        Split::Test,
        read_split(root, "test")?,
    )?;
    Ok(Cifar10 { train, test })
}

fn read_split(root: &Path, name: &str) -> Result<Option<SplitFiles>, DataError> {
    let dir = root.join(name);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut files = SplitFiles::default();
    for class_dir in read_dir_sorted(&dir)? {
        if !class_dir.is_dir() {
            continue;
        }
        let class = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let images = files.classes.entry(class).or_default();
        for file in read_dir_sorted(&class_dir)? {
            let is_image = file
                .file_name()
                .is_some_and(|n| is_image_name(&n.to_string_lossy()));
            if is_image && file.is_file() {
                let bytes = super::read_file(&file)?;
                images.push((file, bytes));
            }
        }
    }
    Ok(Some(files))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io_error = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = std::fs::read_dir(dir)
        .map_err(io_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    paths.sort();
    Ok(paths)
}

/// Checks the class folders of one split and decodes its images in parallel.
///
/// `source` names the data set in errors about the split as a whole; `split_path` names the
/// split's folder in errors about one class.
pub fn decode_split(
    source: &Path,
    split_path: &Path,
    split: Split,
    files: Option<SplitFiles>,
) -> Result<Dataset, DataError> {
    let files = files.ok_or_else(|| DataError::MissingSplit {
        path: source.to_path_buf(),
        split,
        expected: match split {
            Split::Train => "a train/ folder of class folders",
            Split::Test => "a test/ folder of class folders",
        },
    })?;

    let mut encoded = Vec::new();
    for (name, mut images) in files.classes {
        // Archives list files in the order they were packed; sort so that every layout
        // yields the same order.
        images.sort_by(|a, b| a.0.cmp(&b.0));
        let Some(label) = CLASS_NAMES.iter().position(|&c| c == name) else {
            return Err(DataError::UnknownClass {
                path: split_path.join(&name),
                name,
            });
        };
        if images.is_empty() {
            return Err(DataError::EmptyClass {
                path: split_path.join(&name),
                name,
            });
        }
        encoded.extend(images.into_iter().map(|(path, bytes)| EncodedImage {
            path,
            label: label as u8,
            bytes,
        }));
    }
    for name in CLASS_NAMES {
        if !encoded
            .iter()
            .any(|image| CLASS_NAMES[image.label as usize] == name)
        {
            return Err(DataError::MissingClass {
                path: split_path.join(name),
                name: name.to_string(),
            });
        }
    }
    decode_all(encoded)
}

fn decode_all(encoded: Vec<EncodedImage>) -> Result<Dataset, DataError> {
    let planes = encoded
        .par_iter()
        .map(|image| decode_image(&image.path, &image.bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let mut set = Dataset::empty();
    set.images.reserve(encoded.len() * IMAGE_BYTES);
    for (image, pixels) in encoded.iter().zip(planes) {
        set.images.extend_from_slice(&pixels);
        set.labels.push(image.label);
    }
    Ok(set)
}

/// Decodes one JPEG or PNG file into CIFAR plane order; it must be 32x32.
pub fn decode_image(path: &Path, bytes: &[u8]) -> Result<[u8; IMAGE_BYTES], DataError> {
    let decoded = image::load_from_memory(bytes).map_err(|e| DataError::BadImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if decoded.width() as usize != IMAGE_SIDE || decoded.height() as usize != IMAGE_SIDE {
        return Err(DataError::WrongImageSize {
            path: path.to_path_buf(),
            width: decoded.width(),
            height: decoded.height(),
        });
    }
    let rgb = decoded.into_rgb8();
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    let mut planes = [0u8; IMAGE_BYTES];
    for (pixel, rgb) in rgb.as_raw().chunks_exact(CHANNELS).enumerate() {
        for channel in 0..CHANNELS {
            planes[channel * plane + pixel] = rgb[channel];
        }
    }
    Ok(planes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
        let image = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn decodes_into_colour_planes() {
        let planes = decode_image(Path::new("x.png"), &png(32, 32, [10, 20, 30])).unwrap();
        assert!(planes[..1024].iter().all(|&p| p == 10));
        assert!(planes[1024..2048].iter().all(|&p| p == 20));
        assert!(planes[2048..].iter().all(|&p| p == 30));
    }

    #[test]
    fn a_wrong_size_names_the_file() {
        let err = decode_image(Path::new("train/cat/big.png"), &png(33, 32, [0; 3])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("train/cat/big.png") && text.contains("33x32"),
            "{text}"
        );
    }
}
