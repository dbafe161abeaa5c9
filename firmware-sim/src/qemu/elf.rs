//! What the firmware image takes of flash and of static RAM, from its ELF sections.

use std::path::Path;

use anyhow::{Context, bail};
use object::{Object, ObjectSection, SectionKind};
use serde::Serialize;

/// Bytes of the image's allocated sections, by kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Footprint {
    /// Code (`.text` and the start-up code).
    pub text_bytes: u64,
    /// Constants, the vector table and the model (`.rodata`).
    pub rodata_bytes: u64,
    /// Initialized statics (`.data`): in RAM, with their first values kept in flash.
    pub data_bytes: u64,
    /// Zeroed and uninitialized statics (`.bss`, `.uninit`): the arena and the image buffer.
    pub bss_bytes: u64,
}

impl Footprint {
    /// Flash: code, constants and the first values of `.data`.
    pub fn flash_bytes(&self) -> u64 {
        self.text_bytes + self.rodata_bytes + self.data_bytes
    }

    /// Static RAM: `.data` and `.bss` (the stack comes on top).
    pub fn static_ram_bytes(&self) -> u64 {
        self.data_bytes + self.bss_bytes
    }
}

/// Sections that `riscv-rt`'s linker script declares to mark the free RAM left to the heap
/// and the stack: they hold no statics.
const MARKERS: [&str; 2] = [".heap", ".stack"];

/// Reads the footprint of the ELF file `path`, and checks that the `model_bytes` bytes at
/// `model_address` lie in one read-only section.
pub fn footprint(path: &Path, model_address: u64, model_bytes: u64) -> anyhow::Result<Footprint> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the firmware image {}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .with_context(|| format!("{}: not an ELF file", path.display()))?;
    let mut footprint = Footprint::default();
    let mut model_in_rodata = false;
    for section in file.sections() {
        let name = section.name().unwrap_or("");
        if MARKERS.contains(&name) {
            continue;
        }
        let size = section.size();
        let slot = match section.kind() {
            SectionKind::Text => &mut footprint.text_bytes,
            SectionKind::ReadOnlyData
            | SectionKind::ReadOnlyDataWithRel
            | SectionKind::ReadOnlyString => {
                let (start, end) = (section.address(), section.address() + size);
                model_in_rodata |= start <= model_address && model_address + model_bytes <= end;
                &mut footprint.rodata_bytes
            }
            SectionKind::Data => &mut footprint.data_bytes,
            SectionKind::UninitializedData => &mut footprint.bss_bytes,
            _ => continue,
        };
        *slot += size;
    }
    if !model_in_rodata {
        bail!(
            "{}: the model ({model_bytes} bytes at {model_address:#x}, as the firmware \
             reports) is not inside a read-only section",
            path.display()
        );
    }
    Ok(footprint)
}
