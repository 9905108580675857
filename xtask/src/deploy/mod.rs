//! The deploy: a target resolved once, the images built and pushed, the ECS service rolled,
//! the new task verified.

pub mod drift;
pub mod iam;
pub mod inflight;
pub mod inspect;
pub mod lock;
pub mod logcheck;
pub mod plan;
pub mod push;
pub mod render;
pub mod roll;
pub mod run;
pub mod summary;
pub mod target;
pub mod verify;
