//! Training: the loss, which initializers train, and (in later steps) gradient transforms,
//! optimizers and the loop.

pub mod loss;
pub mod select;
