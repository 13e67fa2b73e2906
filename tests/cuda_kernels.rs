//! src/gpu/kernels.cu on the host (tests/cuda/host_shim.h maps the CUDA qualifiers away), so the
//! kernels are checked on machines without a GPU or NVRTC: compiled with every warning as an
//! error, then run one emulated thread at a time by tests/cuda/host_run.cpp against plain loops.
//! Skips, saying so, where no C++ compiler is installed.

use std::process::Command;

#[test]
fn kernels_compile_and_compute_on_the_host() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("host_run");
    let built = Command::new(&cxx)
        .args(["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(format!("{root}/tests/cuda/host_run.cpp"))
        .output();
    let built = match built {
        Err(e) => return eprintln!("skipped: no C++ compiler ({cxx}: {e})"),
        Ok(o) => o,
    };
    assert!(built.status.success(), "kernels.cu does not compile:\n{}", String::from_utf8_lossy(&built.stderr));
    let run = Command::new(&exe).output().unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    eprintln!("{report}");
    assert!(run.status.success(), "a kernel disagrees with its definition:\n{report}");
}
