//! The `ferrocorn` binary; everything is in the library (`src/lib.rs`).

fn main() {
    std::process::exit(ferrocorn::main());
}
