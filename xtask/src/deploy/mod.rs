//! The deploy: a target resolved once, the images built and pushed, the ECS service rolled,
//! the new task verified.

pub mod pipeline;
pub mod push;
pub mod roll;
pub mod target;
pub mod verify;
