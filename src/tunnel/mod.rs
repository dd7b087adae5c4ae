//! The node tunnel: frame protocol, stream multiplexer, relay, and on the server the node
//! sessions and the registry that maps virtual IPs to live sessions.

pub mod copy;
pub mod flowbuf;
pub mod mux;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod ws;

#[cfg(test)]
mod tests;
