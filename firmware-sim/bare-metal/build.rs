//! Puts the board's memory map where the runtime crate's `link.x` finds it (as `memory.x`),
//! links with `link.x`, and checks that `FIRMWARE_MODEL_RS` names the model to embed.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FIRMWARE_MODEL_RS");

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let memory = match arch.as_str() {
        "arm" => "memory-cortex-m.x",
        "riscv32" => "memory-riscv.x",
        other => fail(&format!(
            "this firmware builds for thumbv7em-none-eabihf and riscv32imac-unknown-none-elf, \
             not for target_arch {other:?}"
        )),
    };
    println!("cargo:rerun-if-changed={memory}");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(error) = std::fs::copy(memory, out.join("memory.x")) {
        fail(&format!(
            "cannot copy {memory} into {}: {error}",
            out.display()
        ));
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");

    // `include!` resolves a relative path against src/, not where cargo was started.
    match env::var_os("FIRMWARE_MODEL_RS") {
        Some(path) if Path::new(&path).is_absolute() && Path::new(&path).is_file() => {}
        Some(path) => fail(&format!(
            "FIRMWARE_MODEL_RS={}: must be the absolute path of a file written by \
             `host-trainer quantize --rust`",
            Path::new(&path).display()
        )),
        None => fail(
            "set FIRMWARE_MODEL_RS to the absolute path of the Rust file that \
             `host-trainer quantize --rust FILE.rs` wrote (`firmware-sim qemu` does this)",
        ),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
