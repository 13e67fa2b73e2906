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
    type Target = fn(&[u8]);
    let targets: [(&str, Target); 6] = [
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

#[test]
fn an_npy_header_longer_than_the_file_is_refused_before_allocating_it() {
    // Found by the npy fuzzer (fuzz/regressions/npy/oom-5b31...): a version-3 header whose length
    // field says 662 MB in a 42-byte file; ndarray-npy would allocate all of it.
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/npy/oom-5b31004e45285aef1d32f9bb7868a1cd2b1d82aa");
    let err = edgetune::data::npy::read_tensor(&p).unwrap_err().to_string();
    assert!(err.contains("header claims 2130408963 bytes, only 42 are there"), "{err}");
}

#[test]
fn an_npz_entry_whose_npy_header_is_longer_than_the_entry_is_refused() {
    // fuzz/make_hostile.py: a stored "meta.npy" whose version-3 header length field says 2 GiB.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/checkpoint/hostile-lying-header");
    let mut npz = edgetune::data::npy::Npz::open(&p).unwrap();
    let err = npz.floats("meta").unwrap_err().to_string();
    assert!(err.contains("its header claims 2147483648 bytes, only 14 are there"), "{err}");
}
