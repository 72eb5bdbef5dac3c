//! Generates `include/busbar.h` from `src/` with cbindgen (pinned in Cargo.toml), so the
//! header cannot drift from the code: every build rewrites it when it differs, and
//! `scripts/test-c.sh` fails when the committed header is not the generated one.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml is readable");
    // `with_src` parses src/lib.rs and its modules directly: no nested `cargo metadata`.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen could not generate busbar.h");
    let mut header = Vec::new();
    bindings.write(&mut header);
    let path = dir.join("../include/busbar.h");
    if std::fs::read(&path).ok().as_deref() != Some(header.as_slice()) {
        // A read-only source tree (a vendored copy) keeps its committed header.
        if let Err(e) = std::fs::write(&path, &header) {
            println!("cargo:warning=could not write {}: {e}", path.display());
        }
    }
}
