//! CIFAR-10 packed in a `.tar` or `.tar.gz` archive: the official `cifar-10-binary.tar.gz`,
//! or an archive of class folders. The archive is read in one pass, without unpacking it to
//! disk; which layout it holds is decided by the names of its entries.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::binary::{self, META_FILE, TEST_BATCH, TRAIN_BATCHES};
use super::folders::{self, SplitFiles};
use super::{Cifar10, DataError, Dataset, Split, Wanted};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TAR_MAGIC_OFFSET: usize = 257;
const TAR_MAGIC: &[u8; 5] = b"ustar";

/// What one pass over the archive found.
#[derive(Default)]
struct Contents {
    batches: BTreeMap<String, (PathBuf, Vec<u8>)>,
    train: Option<SplitFiles>,
    test: Option<SplitFiles>,
}

/// Reads CIFAR-10 from the archive at `path`.
pub fn load(path: &Path, wanted: Wanted) -> Result<Cifar10, DataError> {
    let contents = read_contents(path, wanted)?;
    if !contents.batches.is_empty() {
        return from_batches(path, contents.batches, wanted);
    }
    if contents.train.is_some() || contents.test.is_some() {
        let train = match wanted {
            Wanted::Both => {
                folders::decode_split(path, &inner(path, "train"), Split::Train, contents.train)?
            }
            Wanted::TestOnly => Dataset::empty(),
        };
        let test = folders::decode_split(path, &inner(path, "test"), Split::Test, contents.test)?;
        return Ok(Cifar10 { train, test });
    }
    Err(DataError::UnknownLayout {
        path: path.to_path_buf(),
    })
}

/// The name of an entry inside the archive, as errors show it.
fn inner(archive: &Path, entry: &str) -> PathBuf {
    PathBuf::from(format!("{}:{}", archive.display(), entry))
}

fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let io_error = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(io_error)?);
    let mut head = [0u8; TAR_MAGIC_OFFSET + TAR_MAGIC.len()];
    let head_len = read_up_to(&mut file, &mut head).map_err(io_error)?;
    let head = &head[..head_len];
    let rest = std::io::Cursor::new(head.to_vec()).chain(file);

    if head.starts_with(&GZIP_MAGIC) {
        return Ok(Box::new(flate2::read::GzDecoder::new(rest)));
    }
    if head.len() == TAR_MAGIC_OFFSET + TAR_MAGIC.len() && &head[TAR_MAGIC_OFFSET..] == TAR_MAGIC {
        return Ok(Box::new(rest));
    }
    Err(DataError::NotAnArchive {
        path: path.to_path_buf(),
        reason: "it starts with neither the gzip magic bytes nor a tar header".to_string(),
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn read_contents(path: &Path, wanted: Wanted) -> Result<Contents, DataError> {
    let damaged = |e: std::io::Error| DataError::BadArchive {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut archive = tar::Archive::new(open(path)?);
    let mut contents = Contents::default();
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let entry_path = entry.path().map_err(damaged)?.into_owned();
        let parts: Vec<String> = entry_path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|c| c != ".")
            .collect();
        let Some(file_name) = parts.last().cloned() else {
            continue;
        };
        let shown = inner(path, &entry_path.to_string_lossy());
        let kind = entry.header().entry_type();

        if kind.is_file() && is_batch_name(&file_name) {
            if wanted == Wanted::TestOnly && TRAIN_BATCHES.contains(&file_name.as_str()) {
                continue;
            }
            let bytes = read_entry(&mut entry).map_err(damaged)?;
            contents.batches.insert(file_name, (shown, bytes));
            continue;
        }

        let n = parts.len();
        let split_of = |index: usize| match parts.get(index).map(String::as_str) {
            Some("train") => Some(Split::Train),
            Some("test") => Some(Split::Test),
            _ => None,
        };
        if kind.is_dir() && n >= 2 {
            if let Some(split) = split_of(n - 2) {
                split_files(&mut contents, split)
                    .classes
                    .entry(file_name)
                    .or_default();
            }
            continue;
        }
        if kind.is_file()
            && n >= 3
            && folders::is_image_name(&file_name)
            && let Some(split) = split_of(n - 3)
        {
            if split == Split::Train && wanted == Wanted::TestOnly {
                continue;
            }
            let bytes = read_entry(&mut entry).map_err(damaged)?;
            split_files(&mut contents, split)
                .classes
                .entry(parts[n - 2].clone())
                .or_default()
                .push((shown, bytes));
        }
    }
    Ok(contents)
}

fn split_files(contents: &mut Contents, split: Split) -> &mut SplitFiles {
    match split {
        Split::Train => contents.train.get_or_insert_with(SplitFiles::default),
        Split::Test => contents.test.get_or_insert_with(SplitFiles::default),
    }
}

fn is_batch_name(name: &str) -> bool {
    name == TEST_BATCH || name == META_FILE || TRAIN_BATCHES.contains(&name)
}

fn read_entry(entry: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn from_batches(
    path: &Path,
    mut batches: BTreeMap<String, (PathBuf, Vec<u8>)>,
    wanted: Wanted,
) -> Result<Cifar10, DataError> {
    let class_names = match batches.remove(META_FILE) {
        Some((meta_path, bytes)) => binary::parse_meta(&meta_path, &bytes)?,
        None => Dataset::empty().class_names,
    };
    let mut train = Dataset {
        class_names: class_names.clone(),
        ..Dataset::empty()
    };
    if wanted == Wanted::Both {
        let found = TRAIN_BATCHES
            .iter()
            .filter(|name| batches.contains_key(**name))
            .count();
        if found != TRAIN_BATCHES.len() {
            return Err(binary::missing_train(path, found));
        }
        for name in TRAIN_BATCHES {
            let (batch_path, bytes) = &batches[name];
            binary::append_records(batch_path, bytes, &mut train)?;
        }
    }
    let Some((test_path, bytes)) = batches.get(TEST_BATCH) else {
        return Err(DataError::MissingSplit {
            path: path.to_path_buf(),
            split: Split::Test,
            expected: "test_batch.bin",
        });
    };
    let mut test = Dataset {
        class_names,
        ..Dataset::empty()
    };
    binary::append_records(test_path, bytes, &mut test)?;
    Ok(Cifar10 { train, test })
}
