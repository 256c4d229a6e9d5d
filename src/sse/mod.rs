//! The event-stream codec: Server-Sent Events as bytes in and bytes out.
//!
//! Pure functions of bytes: this module and its children must never do I/O, spawn, await, log or
//! panic on input a peer controls. `decoder` turns a stream into events (translation), `encoder`
//! builds the events the proxy writes, and `boundary` watches a passthrough stream for the places
//! a heartbeat may go. The rules are the WHATWG HTML "server-sent events" ones (SPEC section 4).

pub mod boundary;
pub mod decoder;
pub mod encoder;
mod scan;

pub use boundary::{BomFilter, BomOutput, BoundaryTracker};
pub use decoder::{DecodeError, Decoder, Event};
pub use encoder::{encode, heartbeat, retry_field, EncodeError, OutEvent};

#[cfg(test)]
mod test_support;
