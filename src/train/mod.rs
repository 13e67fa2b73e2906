//! Training: the loss, which initializers train, gradient transforms (ZNorm, GC, clipping),
//! optimizers and schedules, and the trainer that runs steps.

pub mod checkpoint;
pub mod finetune;
pub mod gradients;
pub mod head;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod select;
pub mod trainer;
pub mod transform;
