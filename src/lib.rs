//! ssebridge: a reverse proxy that makes Server-Sent Events and WebSocket work together.
//!
//! A request travels listener -> connection (TLS, HTTP/1.1 or HTTP/2) -> router -> one of the
//! stream kinds in [`proxy`] -> upstream. [`serve`] starts all of it from a [`config::Config`]
//! and is what `main.rs`, the demo and the integration tests call.

#![forbid(unsafe_code)]
#![warn(clippy::await_holding_lock)]

pub mod admin;
pub mod config;
pub mod demo;
pub mod io;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod server;
pub mod sse;
pub mod strict;
pub mod tls;
pub mod upstream;
pub mod wake;
pub mod workers;
pub mod ws;

pub use server::{serve, Running, ServeError};
