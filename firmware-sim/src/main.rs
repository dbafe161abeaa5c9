//! Runs `core-nostd` over a test set as a firmware would. The inference core it drives
//! is not written yet, so the binary only says so.

fn main() {
    eprintln!("firmware-sim: the int8 inference core is not built yet; nothing to run");
    std::process::exit(2);
}
