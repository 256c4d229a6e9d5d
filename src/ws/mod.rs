//! The WebSocket frame codec of the passthrough relay: frames checked and measured in place,
//! the few frames the proxy writes itself built here.
//!
//! Pure functions of bytes, like [`crate::sse`]: this module never does I/O, spawns, awaits,
//! logs or panics on input a peer controls. The relay (`proxy::ws`) owns the sockets.

pub mod frame;
pub mod utf8;

pub use frame::{
    close, close_frame, control_frame, message_frame, Frame, FrameError, FrameReader, Next, Sender,
};
