//! What each fuzz target does with its input bytes, shared by the libFuzzer binaries in
//! fuzz_targets/ and by tests/fuzz_regressions.rs (which replays fuzz/regressions/ on stable Rust).
//! Every target writes the bytes to a file and goes through the same public entry point a user's
//! file goes through: the contract under test is "an error, never a panic, a hang or an
//! allocation beyond what the bytes justify".

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use edgetune::data::dataset::{self, Prep};
use edgetune::data::image::{Layout, Preprocess, Resize};

/// A scratch folder per process (fuzzers run one input at a time per process).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("edgetune-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    })
}

/// A fresh, empty sub-folder of the scratch folder holding `files`.
fn folder_with(files: &[(&str, &[u8])]) -> PathBuf {
    let d = scratch().join("case");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("case folder");
    for (name, bytes) in files {
        std::fs::write(d.join(name), bytes).expect("write the input");
    }
    d
}

fn prep() -> Prep {
    Prep { channels: 3, size: [16, 16], preprocess: Preprocess::Imagenet, layout: Layout::Nchw, resize: Resize::Crop }
}

/// Loads a data SPEC and, when it loads, prepares its first batch (resize, channels, preprocess).
fn load_and_batch(spec: &str) {
    if let Ok(ds) = dataset::load(spec, false) {
        let first: Vec<usize> = (0..ds.len().min(4)).collect();
        let _ = ds.batch(&first, &prep());
    }
}

/// An ONNX model: import, and when it imports, the inspection report.
pub fn onnx_import(data: &[u8]) {
    let d = folder_with(&[("model.onnx", data)]);
    if let Ok(m) = edgetune::onnx::load(&d.join("model.onnx")) {
        let _ = edgetune::inspect::Report::new(&m).to_json();
    }
}

/// A `.npy` as an input array and as labels, and a `.npz` as an `npz:` dataset.
pub fn npy(data: &[u8]) {
    let d = folder_with(&[("a.npy", data), ("d.npz", data)]);
    let _ = edgetune::data::npy::read_tensor(&d.join("a.npy"));
    let _ = edgetune::data::npy::read_labels(&d.join("a.npy"));
    load_and_batch(&format!("npz:{}", d.join("d.npz").display()));
}

/// An idx images file (first byte even) or labels file (odd), gzipped or not, beside a valid
/// counterpart of 2 images.
pub fn idx(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let images = edgetune::data::idx::encode(&[2, 4, 4], &[7; 32]);
    let labels = edgetune::data::idx::encode(&[2], &[1, 2]);
    let (img, lab): (&[u8], &[u8]) = if which % 2 == 0 { (rest, &labels) } else { (&images, rest) };
    let d = folder_with(&[("train-images-idx3-ubyte", img), ("train-labels-idx1-ubyte", lab)]);
    load_and_batch(&format!("idx:{}", d.display()));
}

/// A CIFAR-10 binary batch file.
pub fn cifar(data: &[u8]) {
    let d = folder_with(&[("data_batch_1.bin", data)]);
    load_and_batch(&format!("cifar:{}", d.display()));
}

/// An image file (PNG when the first byte is even, else JPEG) in a `folder:` dataset.
pub fn image(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let name = if which % 2 == 0 { "a/x.png" } else { "a/x.jpg" };
    let d = folder_with(&[]);
    std::fs::create_dir_all(d.join("a")).expect("class folder");
    std::fs::write(d.join(name), rest).expect("write the input");
    load_and_batch(&format!("folder:{}", d.display()));
}

/// A checkpoint file, restored into a trainer of the shipped ResNet-20.
pub fn checkpoint(data: &[u8]) {
    use edgetune::train::trainer::{TrainConfig, Trainer};
    use std::sync::Mutex;
    static TRAINER: OnceLock<Mutex<Trainer>> = OnceLock::new();
    let trainer = TRAINER.get_or_init(|| {
        // Built from fuzz/ (the fuzz binaries) or from the repository root (the replay test).
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let model = [root.join("models"), root.join("../models")]
            .into_iter()
            .map(|m| m.join("pretrained/resnet20_fashion.onnx"))
            .find(|m| m.is_file())
            .expect("models/pretrained/resnet20_fashion.onnx");
        let graph = edgetune::onnx::load(&model).expect("the shipped model").graph;
        let cfg = TrainConfig {
            train: "all".into(),
            bn: edgetune::autodiff::BnMode::Train,
            norm: edgetune::train::transform::GradNorm::None,
            rule: edgetune::train::optim::Rule::new(edgetune::train::optim::OptimizerName::Adam, 1e-3, 0.9, 0.0, false),
        };
        Mutex::new(Trainer::new(graph, cfg).expect("a trainer"))
    });
    let d = folder_with(&[("checkpoint.npz", data)]);
    let mut t = trainer.lock().unwrap_or_else(|e| e.into_inner());
    let _ = edgetune::train::checkpoint::load(&d, &mut t, &vec![("fuzz", "1".to_string())]);
}
