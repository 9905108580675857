//! One module per command: its flags and its `run`.

pub mod ci;
pub mod config;
pub mod deploy;
pub mod entrypoint;
pub mod rehearse;
pub mod sandbox;
pub mod setup;
pub mod test;
