//! Image folders as users bring them (`folder:DIR`): validation classes matched to the training
//! classes by name, files that are not images skipped and counted in one line, BMP and WebP
//! read, an empty class folder refused by name, `--resize crop` keeping torchvision's centre,
//! and an image that fails to decode only mid-run replaced instead of stopping the run.

mod common;

use std::path::Path;

use common::*;
use edgetune::data::dataset::{load, load_with_classes, Prep};
use edgetune::data::image::{Layout, Preprocess, Resize};
use image::{DynamicImage, Rgb, RgbImage};

/// Writes `img` to `path` (format from the extension), creating its folder.
fn save(path: &Path, img: DynamicImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// An 8x8 image of one colour.
fn flat(v: u8) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, Rgb([v, v / 2, 255 - v])))
}

/// `h` rows, `w` columns; pixel (r, c) holds (20c, 20r, 7) so every kept column and row is known.
fn grid(h: u32, w: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |c, r| Rgb([(20 * c) as u8, (20 * r) as u8, 7])))
}

fn spec(dir: &Path) -> String {
    format!("folder:{}", dir.display())
}

/// A model that predicts class 2 of 3 for any input: x [N,3,8,8] -> GlobalAveragePool -> Flatten
/// -> Gemm with W = 0 and B = [0, 0, 5].
fn always_class_2(path: &Path) {
    use build::*;
    let m = model(
        vec![
            node("GlobalAveragePool", "gap", &["x"], &["p"]),
            node("Flatten", "flat", &["p"], &["f"]),
            node("Gemm", "head", &["f", "W", "B"], &["y"]),
        ],
        vec![floats("W", &[3, 3], &[0.0; 9]), floats("B", &[3], &[0.0, 0.0, 5.0])],
        vec![value("x", &[-1, 3, 8, 8])],
        vec![value("y", &[-1, 3])],
    );
    save_model(&m, path);
}

/// x [N,3,8,8] -> Relu -> y: with unit preprocessing (values >= 0) the output is the input.
fn passthrough(path: &Path) {
    use build::*;
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"])],
        vec![],
        vec![value("x", &[-1, 3, 8, 8])],
        vec![value("y", &[-1, 3, 8, 8])],
    );
    save_model(&m, path);
}

fn save_model(m: &tract_onnx::pb::ModelProto, path: &Path) {
    build::save(m, path);
}

/// `infer --image` through `passthrough` with unit preprocessing: the model input, [N,3,8,8].
fn infer_pixels(images: &[&Path], extra: &[&str]) -> edgetune::Tensor {
    let d = tempfile::tempdir().unwrap();
    let (m, out) = (d.path().join("m.onnx"), d.path().join("y.npy"));
    passthrough(&m);
    let mut args = vec!["infer", m.to_str().unwrap(), "--preprocess", "unit", "--output", out.to_str().unwrap()];
    args.push("--image");
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    args.extend(extra);
    let (code, _, err) = edgetune(&args);
    assert_eq!(code, 0, "{args:?}: {err}");
    edgetune::data::npy::read_tensor(&out).unwrap()
}

fn finetune(model: &Path, data: &str, extra: &[&str]) -> (i32, String, String) {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("o.onnx");
    let mut args = vec!["finetune", model.to_str().unwrap(), "--data", data, "--output", o.to_str().unwrap()];
    args.push("--quiet");
    args.extend(extra);
    edgetune(&args)
}

#[test]
fn validation_classes_are_the_training_classes_by_name() {
    let d = tempfile::tempdir().unwrap();
    let (train, val) = (d.path().join("train"), d.path().join("val"));
    for (class, v) in [("circle", 10), ("square", 100), ("triangle", 200)] {
        for i in 0..2 {
            save(&train.join(class).join(format!("{i}.png")), flat(v));
        }
    }
    // The validation folder holds 2 of the 3 classes: 1 circle, 3 triangles.
    save(&val.join("circle/0.png"), flat(10));
    for i in 0..3 {
        save(&val.join("triangle").join(format!("{i}.png")), flat(200));
    }
    let t = load(&spec(&train), false).unwrap();
    assert_eq!(t.classes.as_deref().unwrap(), ["circle", "square", "triangle"]);
    let v = load_with_classes(&spec(&val), true, t.classes.as_deref()).unwrap();
    assert_eq!(v.y, [0, 2, 2, 2], "triangle keeps training label 2");
    assert_eq!(v.classes, t.classes);
    // Without training classes (npz or idx training data) a folder numbers its own classes.
    assert_eq!(load_with_classes(&spec(&val), true, None).unwrap().y, [0, 1, 1, 1]);

    // Through the CLI: a model that always answers class 2 (triangle) gets 3 of 4 right; with
    // the validation folder numbering its own classes (triangle = 1) it scored 0.
    let m = d.path().join("m.onnx");
    always_class_2(&m);
    let (code, stdout, err) =
        finetune(&m, &spec(&train), &["--val", &spec(&val), "--steps", "1", "--batch", "2", "--lr", "1e-9"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("validation accuracy before: 0.7500"), "{stdout}");

    // A validation class that training does not know is an error naming it.
    save(&val.join("hexagon/0.png"), flat(50));
    let err = load_with_classes(&spec(&val), true, t.classes.as_deref()).err().unwrap().to_string();
    assert!(err.contains("'hexagon' is not one of the training classes (circle, square, triangle)"), "{err}");
    let o = d.path().join("o.onnx");
    let args = ["finetune", m.to_str().unwrap(), "--data", &spec(&train), "--val", &spec(&val)];
    assert_bad_input(&[&args[..], &["--output", o.to_str().unwrap(), "--steps", "1", "--quiet"]].concat(), "hexagon");
}

#[test]
fn files_that_are_not_images_are_skipped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    save(&root.join("a/0.png"), flat(10));
    save(&root.join("a/1.jpg"), flat(30));
    save(&root.join("a/nested/2.png"), flat(50)); // a class's sub-folders count (as ImageFolder)
    save(&root.join("b/0.png"), flat(200));
    std::fs::write(root.join("a/notes.txt"), "shot on a cloudy day").unwrap();
    std::fs::write(root.join("b/Thumbs.db"), [0xd0, 0xcf, 0x11, 0xe0, 0, 0, 0, 0]).unwrap();
    // A PNG signature and nothing readable after it: an image that cannot be read.
    std::fs::write(root.join("b/broken.png"), b"\x89PNG\r\n\x1a\n but not an image").unwrap();
    // A PNG named .jpg is read by its contents; a photo without an extension too.
    save(&root.join("b/renamed.png"), flat(220));
    std::fs::rename(root.join("b/renamed.png"), root.join("b/renamed.jpg")).unwrap();
    save(&root.join("b/noext.png"), flat(240));
    std::fs::rename(root.join("b/noext.png"), root.join("b/noext")).unwrap();
    // Ignored without a word: names starting with '.', files beside the class folders.
    std::fs::write(root.join("a/.DS_Store"), [0u8, 0, 0, 1, b'B', b'u', b'd', b'1']).unwrap();
    std::fs::write(root.join("a/._1.jpg"), [0u8, 5, 22, 7]).unwrap();
    save(&root.join(".ipynb_checkpoints/0-checkpoint.png"), flat(1));
    std::fs::write(root.join("README.txt"), "my photos").unwrap();

    let ds = load(&spec(root), false).unwrap();
    assert_eq!(ds.classes.as_deref().unwrap(), ["a", "b"], "a hidden folder is not a class");
    assert_eq!(ds.y, [0, 0, 0, 1, 1, 1]);
    if let edgetune::data::dataset::Images::Files(files) = &ds.images {
        let names: Vec<_> = files.iter().map(|f| f.strip_prefix(root).unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a/0.png", "a/1.jpg", "a/nested/2.png", "b/0.png", "b/noext", "b/renamed.jpg"]);
    } else {
        panic!("a folder gives image files");
    }

    let m = root.join("m.onnx");
    always_class_2(&m);
    let args = ["--steps", "1", "--batch", "2", "--resize", "crop", "--preprocess", "unit"];
    let (code, _, err) = finetune(&m, &spec(root), &args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let want = format!(
        "{}: skipped 2 files that are not images (a/notes.txt, b/Thumbs.db) and 1 image that cannot be read (b/broken.png: ",
        spec(root)
    );
    assert!(lines[0].starts_with(&want), "{}\nwanted it to start with\n{want}", lines[0]);
}

#[test]
fn bmp_and_webp_are_read() {
    let d = tempfile::tempdir().unwrap();
    // Both written lossless by the `image` crate (24-bit BMP, lossless WebP): the model input is
    // exactly the pixels / 255.
    let files = [d.path().join("g.bmp"), d.path().join("g.webp")];
    for f in &files {
        save(f, grid(8, 8));
    }
    let x = infer_pixels(&[&files[0], &files[1]], &[]);
    assert_eq!(x.shape(), [2, 3, 8, 8]);
    for n in 0..2 {
        for (r, c) in [(0, 0), (3, 5), (7, 7)] {
            let at = |ch: usize| x.data()[((n * 3 + ch) * 8 + r) * 8 + c];
            assert_eq!([at(0), at(1), at(2)], [(20 * c) as f32 / 255.0, (20 * r) as f32 / 255.0, 7.0 / 255.0]);
        }
    }
    // And in a folder dataset.
    save(&d.path().join("data/a/0.bmp"), flat(10));
    save(&d.path().join("data/b/0.webp"), flat(200));
    assert_eq!(load(&spec(&d.path().join("data")), false).unwrap().y, [0, 1]);
}

#[test]
fn an_empty_class_folder_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m.onnx");
    always_class_2(&m);
    let data = d.path().join("data");
    save(&data.join("cat/0.png"), flat(10));
    save(&data.join("dog/0.png"), flat(200));
    std::fs::create_dir_all(data.join("bird")).unwrap();
    let o = d.path().join("o.onnx");
    let args = ["finetune", m.to_str().unwrap(), "--data", &spec(&data), "--output", o.to_str().unwrap()];
    assert_bad_input(&[&args[..], &["--steps", "1", "--quiet"]].concat(), "class folder 'bird' holds no images");
    // A class folder holding only files that are not images is empty too, and says what it held.
    std::fs::write(data.join("bird/notes.txt"), "todo").unwrap();
    assert_bad_input(&[&args[..], &["--steps", "1", "--quiet"]].concat(), "not an image (bird/notes.txt)");
}

#[test]
fn resize_crop_keeps_the_centre_as_torchvision() {
    let d = tempfile::tempdir().unwrap();
    // 8 rows and W columns, cropped to 8x8 without scaling: torchvision's CenterCrop(8) keeps
    // columns from int(round((W - 8) / 2)) (0.29.2 on PIL images: W 9 -> 0, 11 -> 2, 13 -> 2);
    // an image 11 rows high keeps rows from 2.
    let cases = [(8, 9, 0, 0), (8, 11, 0, 2), (8, 13, 0, 2), (11, 8, 2, 0)];
    let files: Vec<_> = cases
        .iter()
        .map(|&(h, w, _, _)| {
            let f = d.path().join(format!("{h}x{w}.png"));
            save(&f, grid(h, w));
            f
        })
        .collect();
    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let x = infer_pixels(&paths, &["--resize", "crop"]);
    for (n, &(h, w, top, left)) in cases.iter().enumerate() {
        for (r, c) in [(0, 0), (7, 7), (2, 5)] {
            let at = |ch: usize| x.data()[((n * 3 + ch) * 8 + r) * 8 + c];
            let want = [(20 * (c + left)) as f32 / 255.0, (20 * (r + top)) as f32 / 255.0];
            assert_eq!([at(0), at(1)], want, "{h}x{w} at ({r}, {c})");
        }
    }
    // Stretch (the default) scales the 8x11 image instead: its first column is a blend of
    // columns 0 and 1 (values 0 and 20), not column 2 (40).
    let x = infer_pixels(&[paths[1]], &[]);
    assert!(x.data()[0] < 30.0 / 255.0, "stretched: {}", x.data()[0] * 255.0);

    // The same loader in a folder dataset, with scaling: torchvision's Resize(8) takes 16x22 to
    // 8 x int(8 * 22 / 16) = 8x11, CenterCrop(8) then keeps columns from round(1.5) = 2.
    save(&d.path().join("data/a/0.png"), grid(16, 22));
    let ds = load(&spec(&d.path().join("data")), false).unwrap();
    let prep = |resize| Prep { channels: 3, size: [8, 8], preprocess: Preprocess::Unit, layout: Layout::Nchw, resize };
    let (crop, _) = ds.batch(&[0], &prep(Resize::Crop)).unwrap();
    let want = edgetune::data::image::fit(&grid(16, 22), [8, 11], Resize::Stretch).crop_imm(2, 0, 8, 8).to_rgb8();
    assert_eq!(
        crop.data()[..64].iter().map(|v| (v * 255.0).round() as u8).collect::<Vec<_>>(),
        want.pixels().map(|p| p.0[0]).collect::<Vec<_>>()
    );
}

#[test]
fn an_image_that_only_fails_to_decode_mid_run_is_replaced() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    save(&data.join("a/0.png"), flat(10));
    save(&data.join("b/0.png"), flat(200));
    // A PNG cut off inside its pixel data: the header (read at load time) is whole.
    let noise = RgbImage::from_fn(32, 32, |x, y| Rgb([(x * 37 + y * 11) as u8, (x ^ y) as u8, (x * y) as u8]));
    let mut png = std::io::Cursor::new(Vec::new());
    noise.write_to(&mut png, image::ImageFormat::Png).unwrap();
    std::fs::write(data.join("a/1.png"), &png.get_ref()[..60]).unwrap();
    let ds = load(&spec(&data), false).unwrap();
    assert_eq!(ds.y, [0, 0, 1], "the header passes");
    let prep =
        Prep { channels: 3, size: [8, 8], preprocess: Preprocess::Unit, layout: Layout::Nchw, resize: Resize::Stretch };
    // Sample 1 does not decode: the next one (b/0.png, label 1) takes its place.
    let (x, y) = ds.batch(&[1, 0], &prep).unwrap();
    assert_eq!(y, [1, 0]);
    assert_eq!([x.data()[0], x.data()[3 * 64]], [200.0 / 255.0, 10.0 / 255.0]);

    let m = d.path().join("m.onnx");
    always_class_2(&m);
    let (code, _, err) = finetune(&m, &spec(&data), &["--steps", "2", "--batch", "3", "--no-shuffle"]);
    assert_eq!(code, 0, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "named once: {err}");
    assert!(warnings[0].contains("1.png") && warnings[0].contains("next image that decodes"), "{err}");
}
