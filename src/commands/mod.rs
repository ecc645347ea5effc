//! One module per `swg` subcommand.

pub(crate) mod ca;
pub(crate) mod policy;
pub(crate) mod serve;
