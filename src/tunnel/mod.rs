//! The node tunnel: frame protocol, stream multiplexer, copying a socket to a stream, and on the
//! server the node sessions and the registry that maps virtual IPs to live sessions. It carries
//! streams for whoever opens them and knows nothing of proxies or money (`crate::relay` joins
//! the two).

pub mod control;
pub mod copy;
pub mod flowbuf;
pub mod mux;
pub mod protocol;
pub mod record;
pub mod registry;
pub mod seen;
pub mod session;
pub mod ws;
pub mod wsframe;

#[cfg(test)]
mod tests;
