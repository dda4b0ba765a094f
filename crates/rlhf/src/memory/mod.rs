//! What a run costs before it is spent: sizes checked against the model, and whether a model
//! fits a browser tab.

pub mod footprint;
pub mod sizes;
