//! The training loop as a program embeds it (`train::finetune::run` with an observer), checked
//! where the command line only prints: the events it sees and the summary it gets back.

mod common;

use std::time::Instant;

use edgetune::train::finetune::{self, Control, Event, Finetune};

#[test]
fn training_time_leaves_out_validation_before_the_first_step() {
    let root = common::root();
    let dir = tempfile::tempdir().unwrap();
    let data = format!("idx:{}", root.join("models/data/mnist-slice").display());
    let mut run = Finetune::new(root.join("models/pretrained/resnet20_fashion.onnx"), &data, dir.path().join("o.onnx"));
    // One step of 4 images against two passes over the validation split: validation is most of
    // the wall time, so counting it (or subtracting it twice) is far outside the bounds below.
    (run.val, run.steps, run.batch) = (Some(data.clone()), Some(1), 4);
    // The validation before the first step runs between these two events.
    let (mut started, mut validating) = (None, None);
    let wall = Instant::now();
    let done = finetune::run(&run, &mut |e: Event| {
        match e {
            Event::Started { .. } => started = Some(Instant::now()),
            Event::Validated { before: true, .. } => validating = started.map(|t| t.elapsed().as_secs_f64()),
            _ => {}
        }
        Control::Continue
    })
    .unwrap();
    let wall = wall.elapsed().as_secs_f64();
    let validating = validating.expect("a validation before the first step");
    assert!(
        done.train_secs >= 0.0 && done.train_secs <= wall - validating,
        "train_secs {:.3} s: not within [0, wall {wall:.3} s - validation before training {validating:.3} s]",
        done.train_secs
    );
}
