//! Non-finite training: a batch whose image holds a NaN makes the loss NaN. By default the run
//! stops (exit 1) with one line naming the step and the tensor, keeping the last checkpoint, which
//! `--resume --on-nonfinite skip` continues from; with `--on-nonfinite skip` the step is skipped
//! (nothing changes), counted in the log and the summary, and the run finishes.

mod common;

use common::*;

#[test]
fn abort_keeps_the_checkpoint_and_skip_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/pretrained/resnet20_fashion.onnx");
    let n = 4;
    let mut x = edgetune::tensor::lcg_values(n * 3 * 32 * 32, 3);
    x[2 * 3 * 32 * 32 + 100] = f32::NAN; // sample 2, the third step with --batch 1 --no-shuffle
    let data = d.path().join("d.npz");
    write_xy_npz(&data, &edgetune::Tensor::from_vec([n, 3, 32, 32], x), &[0, 1, 2, 3]);
    let spec = format!("npz:{}", data.display());
    let path = |name: &str| d.path().join(name).display().to_string();
    let (out, ck, log) = (path("out.onnx"), path("ck"), path("log.jsonl"));
    let base = ["finetune", model, "--data", &spec, "--output", &out, "--batch", "1", "--steps", "4", "--no-shuffle"];
    let checkpointed = ["--checkpoint", ck.as_str(), "--checkpoint-every", "1", "--log", log.as_str()];
    let with = |extra: &[&'static str]| -> Vec<&str> { [&base[..], &checkpointed[..], extra].concat() };

    let (code, _, err) = edgetune(&with(&[]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: non-finite value: step 3: the loss is NaN"), "{err}");
    assert!(!std::path::Path::new(&out).exists(), "no output after an aborted run");

    let (code, stdout, err) = edgetune(&with(&["--resume", "--on-nonfinite", "skip"]));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("resuming after step 2"), "the checkpoint of step 2 was kept: {stdout}");
    assert!(stdout.contains("1 step(s) skipped"), "{stdout}");
    assert!(err.contains("step 3: the loss is NaN") && err.contains("step skipped"), "{err}");
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = rows.last().unwrap();
    assert_eq!((last["step"].as_u64(), last["skipped"].as_u64()), (Some(4), Some(1)), "{rows:?}");
    assert!(rows.iter().any(|r| r["step"] == 3 && r["loss"].is_null()), "the skipped step is logged: {rows:?}");
    assert!(edgetune::onnx::load(std::path::Path::new(&out)).is_ok());
}
