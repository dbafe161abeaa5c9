//! Where the data set is when the user does not say.

use std::path::{Path, PathBuf};

/// The environment variable that names the data set.
pub const DATA_ENV: &str = "CIFAR10_DATA";
/// Tried after the environment variable: a `data/` folder in the working directory.
pub const LOCAL_DIR: &str = "data";
/// Tried last: the copy shared beside a checkout of this project.
pub const SHARED_COPY: &str = "../shared/data/cifar10/cifar10-jpeg.tar.gz";

/// The data set to read: `explicit` if given, else `$CIFAR10_DATA`, else `./data/`, else
/// the shared copy. Fails with instructions when none exists.
pub fn resolve(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(value) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(value));
    }
    for candidate in [LOCAL_DIR, SHARED_COPY] {
        let path = PathBuf::from(candidate);
        if path.exists() {
            return Ok(path);
        }
    }
    anyhow::bail!(
        "no CIFAR-10 data found: --data was not given, ${DATA_ENV} is not set, and neither \
         ./{LOCAL_DIR}/ nor {SHARED_COPY} exists.\n\
         Fetch the official archive with `host-trainer download` (it writes \
         ./{LOCAL_DIR}/cifar-10-binary.tar.gz), or pass --data PATH"
    )
}
