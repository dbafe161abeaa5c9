//! Progress bars, hidden when the caller asks for quiet output or stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn target(visible: bool) -> ProgressDrawTarget {
    if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over a byte count, with transfer rate; a spinner when the total is unknown.
pub fn bytes_bar(total: Option<u64>, visible: bool) -> ProgressBar {
    match total {
        Some(total) => ProgressBar::with_draw_target(Some(total), target(visible)).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, target(visible)).with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("the template is valid"),
        ),
    }
}

/// A bar over a count of images; the message carries running figures.
pub fn images_bar(total: u64, prefix: &str, visible: bool) -> ProgressBar {
    ProgressBar::with_draw_target(Some(total), target(visible))
        .with_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        )
        .with_prefix(prefix.to_string())
}
