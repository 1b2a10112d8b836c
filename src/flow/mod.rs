//! Flows: the file format ([`model`]), reading files ([`load`]), finding
//! every problem in them ([`validate`]), the templates their strings are
//! ([`template`]) and turning a valid flow into the immutable structure
//! the engine walks ([`compile`]), with the flows its subflows run
//! inlined ([`compose`]).

pub mod compile;
pub mod compose;
pub mod diff;
pub mod error;
pub mod hosts;
pub mod load;
pub mod model;
pub mod policy;
pub mod position;
pub mod record;
pub mod steps;
pub mod template;
pub mod validate;
