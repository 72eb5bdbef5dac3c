//! Generates `include/busbar.h` from `src/` with cbindgen (pinned in Cargo.toml), so the
//! header cannot drift from the code: every build rewrites it when it differs, and
//! `scripts/test-c.sh` fails when the committed header is not the generated one.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let mut config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml is readable");
    // The version macros come from the one version in the root Cargo.toml, so the header
    // cannot name another release than the library it was built with.
    let env = |name: &str| std::env::var(name).expect("cargo sets CARGO_PKG_VERSION_*");
    config.after_includes = Some(format!(
        "\n// busbar's version at compile time (the library's at run time: busbar_version()).\n\
         #define BUSBAR_VERSION_MAJOR {}\n#define BUSBAR_VERSION_MINOR {}\n\
         #define BUSBAR_VERSION_PATCH {}\n#define BUSBAR_VERSION \"{}\"\n{}",
        env("CARGO_PKG_VERSION_MAJOR"),
        env("CARGO_PKG_VERSION_MINOR"),
        env("CARGO_PKG_VERSION_PATCH"),
        env("CARGO_PKG_VERSION"),
        // cbindgen.toml's own `after_includes`: the deprecated names.
        config.after_includes.as_deref().unwrap_or_default(),
    ));
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
    // The shared library's SONAME names the major version, as C libraries do:
    // libbusbar.so.0 -> libbusbar.so.0.1.0 (`make -C ffi install` makes the symlinks).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,-soname,libbusbar.so.{}",
            env("CARGO_PKG_VERSION_MAJOR")
        );
    }
}
