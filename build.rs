//! The build's identity: a hash of the sources, so that the master and the
//! native modules it starts workers with can tell whether they are one
//! build (the boot description and the scoreboard layout are one build's;
//! see src/boot.rs). A version number would not do: a cargo build tree
//! keeps modules of older sources (target/native/) under the same version.
//!
//! FNV-1a over the paths and bytes of src/ (recursively), Cargo.toml and
//! Cargo.lock, in sorted order: stable across runs and machines for the
//! same sources, which is all that matters.

use std::fs;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut inputs = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    files(&root.join("src"), &mut inputs);
    inputs.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in &inputs {
        let rel = path.strip_prefix(&root).unwrap_or(path);
        let bytes = fs::read(path).unwrap_or_default();
        for b in rel
            .to_string_lossy()
            .as_bytes()
            .iter()
            .chain(&[0])
            .chain(&bytes)
        {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo::rustc-env=FERROCORN_BUILD_ID={hash:016x}");
    println!("cargo::rerun-if-changed=src");
    println!("cargo::rerun-if-changed=Cargo.toml");
    println!("cargo::rerun-if-changed=Cargo.lock");
}
