//! CIFAR-10 binary and image-folder datasets: they load with the right labels, bad files are
//! one-line errors naming the file, and `finetune` trains on both.

mod common;

use std::path::Path;

use common::*;
use edgetune::data::dataset::load;

/// CIFAR-10 records: label byte, then R, G, B planes; image i is uniformly (i*10, 0, 255-i*10).
fn cifar_records(labels: &[u8]) -> Vec<u8> {
    labels
        .iter()
        .enumerate()
        .flat_map(|(i, &l)| {
            let mut r = vec![l];
            r.extend(std::iter::repeat_n((i * 10) as u8, 1024));
            r.extend(std::iter::repeat_n(0u8, 1024));
            r.extend(std::iter::repeat_n(255 - (i * 10) as u8, 1024));
            r
        })
        .collect()
}

fn write_folder(dir: &Path) {
    for (class, shade) in [("cat", 40u8), ("dog", 200u8)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_pixel(20 + i as u32, 16, image::Rgb([shade, shade / 2, i * 30]));
            img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn cifar_and_folder_load_and_reject_bad_files() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("data_batch_1.bin"), cifar_records(&[3, 9])).unwrap();
    std::fs::write(d.path().join("data_batch_2.bin"), cifar_records(&[0])).unwrap();
    std::fs::write(d.path().join("test_batch.bin"), cifar_records(&[7])).unwrap();
    let spec = format!("cifar:{}", d.path().display());
    let train = load(&spec, false).unwrap();
    assert_eq!(train.y, vec![3, 9, 0]);
    assert_eq!(load(&spec, true).unwrap().y, vec![7]);
    // Pixel (0, 0) of image 1: R plane 10, G 0, B 245 -> unit preprocessing 10/255, 0, 245/255.
    let prep = edgetune::data::dataset::Prep {
        channels: 3,
        size: [32, 32],
        preprocess: edgetune::data::image::Preprocess::Unit,
        layout: edgetune::data::image::Layout::Nchw,
        resize: edgetune::data::image::Resize::Stretch,
    };
    let (x, _) = train.batch(&[1], &prep).unwrap();
    let plane = 32 * 32;
    assert_eq!([x.data()[0], x.data()[plane], x.data()[2 * plane]], [10.0 / 255.0, 0.0, 245.0 / 255.0]);
    std::fs::write(d.path().join("test_batch.bin"), &cifar_records(&[1])[..100]).unwrap();
    let err = load(&spec, true).err().unwrap().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("records"), "{err}");

    let f = tempfile::tempdir().unwrap();
    write_folder(f.path());
    let spec = format!("folder:{}", f.path().display());
    let ds = load(&spec, false).unwrap();
    assert_eq!(ds.y, vec![0, 0, 0, 1, 1, 1], "classes in sorted folder order");
    // An image that cannot be read is skipped (and counted on stderr); a class folder left with
    // none is an error naming the file.
    std::fs::write(f.path().join("dog").join("broken.png"), b"\x89PNG not really").unwrap();
    assert_eq!(load(&spec, false).unwrap().y, vec![0, 0, 0, 1, 1, 1]);
    std::fs::create_dir(f.path().join("emu")).unwrap();
    std::fs::rename(f.path().join("dog").join("broken.png"), f.path().join("emu").join("broken.png")).unwrap();
    let err = load(&spec, false).err().unwrap().to_string();
    assert!(err.contains("emu/broken.png"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    assert!(load(&format!("folder:{}", empty.path().display()), false).is_err());
}

#[test]
fn finetune_trains_on_cifar_and_folders() {
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("data_batch_1.bin"), cifar_records(&[1, 2, 3, 4])).unwrap();
    std::fs::write(d.path().join("test_batch.bin"), cifar_records(&[5, 6])).unwrap();
    let f = tempfile::tempdir().unwrap();
    write_folder(f.path());
    for spec in [format!("cifar:{}", d.path().display()), format!("folder:{}", f.path().display())] {
        let out = d.path().join("out.onnx");
        let (code, stdout, err) = edgetune(&[
            "finetune",
            model.to_str().unwrap(),
            "--data",
            &spec,
            "--val",
            &spec,
            "--output",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--batch",
            "2",
            "--quiet",
        ]);
        assert_eq!(code, 0, "{spec}: {err}");
        assert!(stdout.contains("validation accuracy before"), "{stdout}");
        assert!(edgetune::onnx::load(&out).is_ok());
        std::fs::remove_file(&out).unwrap();
    }
}
