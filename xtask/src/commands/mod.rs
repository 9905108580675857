//! One module per command: its flags and its `run`.

pub mod ci;
pub mod config;
pub mod deploy;
pub mod diff;
pub mod entrypoint;
mod inspect_target;
pub mod logs;
pub mod rehearse;
pub mod render;
pub mod rollback;
pub mod sandbox;
pub mod setup;
pub mod status;
pub mod test;
