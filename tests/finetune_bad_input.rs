//! `edgetune finetune` on bad data and bad outputs: a one-line `error:` naming the problem, exit
//! code 2, and nothing written or overwritten (an existing output keeps its bytes, no file
//! appears beside it). The model is the shipped pretrained ResNet-20 (no fixtures needed).

mod common;

use std::path::Path;

use common::*;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/pretrained/resnet20_fashion.onnx");

/// Runs finetune on `data` into `out_dir/out.onnx` (which holds sentinel bytes) and checks the
/// refusal and that `out_dir` is left exactly as it was.
fn refused(data: &str, extra: &[&str], needle: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.onnx");
    std::fs::write(&out, b"the user's old model").unwrap();
    let mut args =
        vec!["finetune", MODEL, "--data", data, "--output", out.to_str().unwrap(), "--steps", "1", "--quiet"];
    args.extend(extra);
    assert_bad_input(&args, needle);
    assert_eq!(std::fs::read(&out).unwrap(), b"the user's old model", "{data}: the output was touched");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1, "{data}: a file was left beside the output");
}

/// `npz:` data of two grey 32x32 RGB images with these labels, in `dir`.
fn two_images(dir: &Path, labels: &[i64]) -> String {
    let p = dir.join("train.npz");
    write_xy_npz(&p, &edgetune::Tensor::from_vec([2, 3, 32, 32], vec![0.5; 2 * 3 * 32 * 32]), labels);
    format!("npz:{}", p.display())
}

fn write_png(path: &Path, value: u8) {
    image::GrayImage::from_pixel(8, 8, image::Luma([value])).save(path).unwrap();
}

#[test]
fn missing_and_empty_data_folders() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no_such_folder");
    for kind in ["idx", "cifar", "folder"] {
        refused(&format!("{kind}:{}", missing.display()), &[], "no_such_folder");
        refused(&format!("{kind}:{}", d.path().display()), &[], &d.path().display().to_string());
    }
    refused(&format!("npz:{}", missing.join("x.npz").display()), &[], "x.npz");
}

#[test]
fn an_unreadable_image_is_named() {
    // Beside other images an unreadable one is skipped (tests/data_folder.rs); as the only file
    // of its class it leaves the class empty, an error naming the class and the file.
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("a")).unwrap();
    write_png(&d.path().join("a").join("0.png"), 10);
    std::fs::create_dir(d.path().join("b")).unwrap();
    std::fs::write(d.path().join("b").join("broken.png"), b"\x89PNG\r\n\x1a\n but not an image").unwrap();
    refused(&format!("folder:{}", d.path().display()), &[], "class folder 'b' holds no images");
    refused(&format!("folder:{}", d.path().display()), &[], "b/broken.png");
}

#[test]
fn labels_that_do_not_fit_the_classes() {
    let d = tempfile::tempdir().unwrap();
    let spec = two_images(d.path(), &[3, 12]);
    refused(&spec, &[], "label 12"); // the model's own 10 classes
    refused(&spec, &["--num-classes", "5"], "label 12");
    let spec = two_images(d.path(), &[3, -1]);
    refused(&spec, &[], "label -1");
}

#[test]
fn an_output_that_is_a_folder_or_not_writable() {
    let d = tempfile::tempdir().unwrap();
    let spec = two_images(d.path(), &[3, 4]);
    let folder = d.path().join("a_folder");
    std::fs::create_dir(&folder).unwrap();
    assert_bad_input(&["finetune", MODEL, "--data", &spec, "--output", folder.to_str().unwrap()], "directory");
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
    let nowhere = d.path().join("missing/out.onnx");
    assert_bad_input(&["finetune", MODEL, "--data", &spec, "--output", nowhere.to_str().unwrap()], "cannot write");
}

#[test]
fn a_memory_cap_too_small_for_the_batch_is_a_clear_error() {
    let slice = format!("idx:{}/models/data/mnist-slice", env!("CARGO_MANIFEST_DIR"));
    // A batch of 256 32x32 images through ResNet-20 needs more than 60 MiB of activations: the
    // training plan's estimate refuses it before the step.
    refused(&slice, &["--batch", "256", "--max-memory", "60M"], "is available under --max-memory 60 MiB");
    refused(&slice, &["--max-memory", "lots"], "expected a size such as 800M or 4G");
}
