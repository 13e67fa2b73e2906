//! Replays every input kept in fuzz/regressions/<target>/ (crashers the fuzzers found, once
//! fixed, and a few hostile hand-made files) through the same code as the fuzz targets, on stable
//! Rust: each must end in an error or a result, never a panic.

#[allow(dead_code)]
#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_kept_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let targets: [(&str, fn(&[u8])); 6] = [
        ("onnx_import", targets::onnx_import),
        ("npy", targets::npy),
        ("idx", targets::idx),
        ("cifar", targets::cifar),
        ("image", targets::image),
        ("checkpoint", targets::checkpoint),
    ];
    let mut replayed = 0;
    for (name, run) in targets {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no inputs kept", dir.display());
        for f in files {
            println!("{name}: {}", f.display());
            run(&std::fs::read(&f).unwrap());
            replayed += 1;
        }
    }
    println!("{replayed} inputs replayed");
}
