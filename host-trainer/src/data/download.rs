//! Fetching the official CIFAR-10 archive, with a progress bar, an MD5 check, and an atomic
//! write: the file appears under its final name only once it is whole and verified.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use md5::{Digest, Md5};

/// Where the official binary archive is published.
pub const OFFICIAL_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of the official archive, as its publisher lists it.
pub const OFFICIAL_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// Downloads `url` into `dir`, naming the file after the URL's last path segment.
///
/// `expected_md5` is checked when given; the official URL always has its checksum checked.
/// Returns the path written.
pub fn download(
    url: &str,
    dir: &Path,
    expected_md5: Option<&str>,
    show_progress: bool,
) -> anyhow::Result<PathBuf> {
    let expected_md5 = expected_md5
        .map(str::to_ascii_lowercase)
        .or_else(|| (url == OFFICIAL_URL).then(|| OFFICIAL_MD5.to_string()));
    let file_name = url
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .with_context(|| format!("{url}: the URL does not end in a file name"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join(file_name);

    let mut response = ureq::get(url)
        .call()
        .with_context(|| format!("downloading {url}"))?;
    let expected_bytes: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());

    let progress = crate::progress::bytes_bar(expected_bytes, show_progress);
    progress.set_message(file_name.to_string());
    let mut partial = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut hasher = Md5::new();
    let mut received: u64 = 0;
    let mut reader = response.body_mut().as_reader();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buffer)
            .with_context(|| format!("{url}: the connection broke after {received} bytes"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        partial
            .write_all(&buffer[..n])
            .with_context(|| format!("writing {}", partial.path().display()))?;
        received += n as u64;
        progress.set_position(received);
    }
    progress.finish_and_clear();

    if let Some(expected) = expected_bytes
        && received != expected
    {
        bail!(
            "{url}: the connection closed after {received} of {expected} bytes; nothing was written"
        );
    }
    let actual_md5 = format!("{:x}", hasher.finalize());
    if let Some(expected) = &expected_md5
        && *expected != actual_md5
    {
        bail!(
            "{url}: MD5 is {actual_md5}, expected {expected}; the download is damaged or not \
             the CIFAR-10 archive, and nothing was written"
        );
    }
    partial
        .as_file()
        .sync_all()
        .with_context(|| format!("writing {}", partial.path().display()))?;
    partial
        .persist(&target)
        .with_context(|| format!("cannot rename the download to {}", target.display()))?;
    tracing::info!(
        "downloaded {received} bytes to {} (MD5 {actual_md5}{})",
        target.display(),
        if expected_md5.is_some() {
            ", verified"
        } else {
            ", not checked: no --md5 given"
        }
    );
    Ok(target)
}
