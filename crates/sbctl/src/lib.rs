//! Switchboard developer tooling as a library, so integration tests and the load tool can mint
//! tokens and run the mock platform in-process instead of shelling out to the `sbctl` binary.

pub mod check;
#[cfg(unix)]
pub mod demo;
pub mod keygen;
#[cfg(unix)]
pub mod load;
pub mod mint;
pub mod mock;
pub mod render;
