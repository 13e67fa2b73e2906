//! The catalogue of bad inputs, through the CLI: models, arrays, images, labels, data and
//! options. Every case must exit with code 2 and one `error:` line that names the problem (the
//! needle), with no panic, and leave nothing behind: the case's folder holds exactly the files
//! it was given (no output, no temporary file). The figure in docs/verification.md's "Reliability" section
//! is the number of cases here.

mod common;

use std::path::Path;

use common::*;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/pretrained/resnet20_fashion.onnx");
const HOSTILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions");

/// One case: the files to create in a fresh folder, the command (`{d}` stands for the folder), the needle.
struct Case {
    files: Vec<(&'static str, Vec<u8>)>,
    args: &'static str,
    needle: &'static str,
}

fn case(files: Vec<(&'static str, Vec<u8>)>, args: &'static str, needle: &'static str) -> Case {
    Case { files, args, needle }
}

fn npy(shape: &[usize]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.npy");
    let n = shape.iter().product();
    edgetune::data::npy::write_tensor(&p, &edgetune::Tensor::from_vec(shape, vec![0.5; n])).unwrap();
    std::fs::read(p).unwrap()
}

fn labels(values: &[i64]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l.npy");
    ndarray_npy::write_npy(&p, &ndarray::arr1(values)).unwrap();
    std::fs::read(p).unwrap()
}

fn npz(n: usize, y: &[i64]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("d.npz");
    write_xy_npz(&p, &edgetune::Tensor::from_vec([n, 3, 32, 32], vec![0.5; n * 3 * 32 * 32]), y);
    std::fs::read(p).unwrap()
}

fn hostile(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(HOSTILE).join(path)).unwrap()
}

fn png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_pixel(8, 8, image::Luma([9])).write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    edgetune::data::idx::encode(dims, data)
}

fn catalogue() -> Vec<Case> {
    let model = || std::fs::read(MODEL).unwrap();
    let x = || npy(&[2, 3, 32, 32]);
    vec![
        // Models.
        case(vec![("x.npy", x())], "infer {d}/missing.onnx --input {d}/x.npy --output {d}/y.npy", "missing.onnx"),
        case(
            vec![("m.onnx", vec![]), ("x.npy", x())],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "empty",
        ),
        case(
            vec![("m.onnx", b"not a model at all".to_vec()), ("x.npy", x())],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "not an ONNX protobuf",
        ),
        case(
            vec![("m.onnx", model()[..5000].to_vec()), ("x.npy", x())],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "m.onnx",
        ),
        case(
            vec![("m.onnx", hostile("onnx_import/hostile-huge-initializer")), ("x.npy", x())],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "'w'",
        ),
        case(
            vec![("m.onnx", hostile("onnx_import/hostile-overflowing-dims")), ("x.npy", x())],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "'w'",
        ),
        case(vec![("m.onnx", hostile("onnx_import/hostile-garbage")), ("x.npy", x())], "inspect {d}/m.onnx", "m.onnx"),
        case(vec![], "inspect {d}", "directory"),
        // Arrays.
        case(vec![("m.onnx", model())], "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy", "x.npy"),
        case(
            vec![("m.onnx", model()), ("x.npy", b"1 2 3".to_vec())],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "x.npy",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", npy(&[3, 32]))],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "does not fit",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", npy(&[1, 1, 32, 32]))],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "channel",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", hostile("npy/oom-5b31004e45285aef1d32f9bb7868a1cd2b1d82aa"))],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "header claims",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", hostile("npy/hostile-complex"))],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "x.npy",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", hostile("npy/hostile-huge-shape"))],
            "infer {d}/m.onnx --input {d}/x.npy --output {d}/y.npy",
            "x.npy",
        ),
        // Images.
        case(vec![("m.onnx", model())], "infer {d}/m.onnx --image {d}/cat.png --output {d}/y.npy", "cat.png"),
        case(
            vec![("m.onnx", model()), ("cat.png", b"plain text".to_vec())],
            "infer {d}/m.onnx --image {d}/cat.png --output {d}/y.npy",
            "cat.png",
        ),
        case(
            vec![("m.onnx", model()), ("cat.png", hostile("image/hostile-png-huge")[1..].to_vec())],
            "infer {d}/m.onnx --image {d}/cat.png --output {d}/y.npy",
            "cat.png",
        ),
        case(
            vec![("m.onnx", model()), ("cat.jpg", hostile("image/hostile-jpeg-truncated")[1..].to_vec())],
            "infer {d}/m.onnx --image {d}/cat.jpg --output {d}/y.npy",
            "cat.jpg",
        ),
        // Labels.
        case(
            vec![("m.onnx", model()), ("x.npy", x())],
            "grad {d}/m.onnx --input {d}/x.npy --labels {d}/l.npy --output {d}/g.npz",
            "l.npy",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", x()), ("l.npy", labels(&[1, 12]))],
            "grad {d}/m.onnx --input {d}/x.npy --labels {d}/l.npy --output {d}/g.npz",
            "label 12",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", x()), ("l.npy", labels(&[1, 2, 3]))],
            "grad {d}/m.onnx --input {d}/x.npy --labels {d}/l.npy --output {d}/g.npz",
            "3 labels for a batch of 2",
        ),
        case(
            vec![("m.onnx", model()), ("x.npy", x()), ("l.npy", npy(&[2]))],
            "grad {d}/m.onnx --input {d}/x.npy --labels {d}/l.npy --output {d}/g.npz",
            "label 0.5 is not an integer",
        ),
        // Data.
        case(
            vec![("m.onnx", model())],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data idx:{d}/nowhere",
            "no such folder",
        ),
        case(
            vec![("m.onnx", model())],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data idx:{d}",
            "train-images",
        ),
        case(
            vec![
                ("m.onnx", model()),
                ("train-images-idx3-ubyte", hostile("idx/hostile-gzip-bomb")[1..].to_vec()),
                ("train-labels-idx1-ubyte", idx(&[1], &[1])),
            ],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data idx:{d}",
            "more than",
        ),
        case(
            vec![
                ("m.onnx", model()),
                ("train-images-idx3-ubyte", idx(&[2, 4, 4], &[1; 32])),
                ("train-labels-idx1-ubyte", idx(&[3], &[1, 2, 3])),
            ],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data idx:{d}",
            "labels",
        ),
        case(
            vec![("m.onnx", model()), ("data_batch_1.bin", hostile("cifar/hostile-partial-record"))],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data cifar:{d}",
            "records",
        ),
        case(
            vec![("m.onnx", model()), ("data_batch_1.bin", hostile("cifar/hostile-bad-label"))],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data cifar:{d}",
            "label 200",
        ),
        case(
            vec![("m.onnx", model())],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data folder:{d}/nowhere",
            "no such folder",
        ),
        case(
            vec![("m.onnx", model()), ("a/x.png", png()), ("b/x.png", b"broken".to_vec())],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data folder:{d}",
            "x.png",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", labels(&[1]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data npz:{d}/d.npz",
            "d.npz",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 10]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data npz:{d}/d.npz",
            "label 10",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2])), ("v.npz", npz(2, &[1, 99]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data npz:{d}/d.npz --val npz:{d}/v.npz",
            "label 99",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --data csv:{d}/d.npz",
            "csv:",
        ),
        // Options.
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --steps 1 --batch 0 --data npz:{d}/d.npz",
            "--batch",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --grad-norm clip:-1 --data npz:{d}/d.npz",
            "clip:-1",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --augment rotate --data npz:{d}/d.npz",
            "rotate",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --resume --data npz:{d}/d.npz",
            "--checkpoint",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --optimizer lion --data npz:{d}/d.npz",
            "lion",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --max-memory lots --data npz:{d}/d.npz",
            "lots",
        ),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/out.onnx --train ^nothing$ --data npz:{d}/d.npz",
            "nothing",
        ),
        case(vec![("m.onnx", model()), ("x.npy", x())], "infer {d}/m.onnx --input {d}/x.npy --output {d}", "directory"),
        case(
            vec![("m.onnx", model()), ("d.npz", npz(2, &[1, 2]))],
            "finetune {d}/m.onnx --output {d}/no/such/out.onnx --data npz:{d}/d.npz",
            "cannot write",
        ),
    ]
}

#[test]
fn every_bad_input_is_one_clear_line_with_exit_code_2_and_leaves_nothing() {
    let cases = catalogue();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        for (name, bytes) in &c.files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let before = listing(d.path());
        let line = c.args.replace("{d}", d.path().to_str().unwrap());
        let args: Vec<&str> = line.split(' ').collect();
        let (code, _, err) = edgetune(&args);
        let ok = code == 2
            && err.starts_with("error: ")
            && err.trim_end().lines().count() == 1
            && !err.contains("panicked")
            && err.contains(c.needle)
            && listing(d.path()) == before;
        if !ok {
            failures.push(format!("case {i} `{}`: exit {code}, needle {:?}, stderr {err:?}", c.args, c.needle));
        }
    }
    println!("{} bad inputs, {} caught as required", cases.len(), cases.len() - failures.len());
    assert!(cases.len() >= 30);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every path under `dir` (files and folders), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e.clone());
            }
            out.push(e.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}
