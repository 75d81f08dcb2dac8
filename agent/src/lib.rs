//! mcp-warden: a host agent that transparently intercepts connections to MCP
//! servers, identifies the calling process and records every connection.
//!
//! See docs/ARCHITECTURE.md for the data path.

pub mod audit;
pub mod cli;
pub mod config;
pub mod credential;
pub mod daemon;
pub mod ebpf;
pub mod http;
pub mod identity;
pub mod intercept;
pub mod keyfile;
pub mod mask;
pub mod mcp;
pub mod pipeline;
pub mod relay;
pub mod resolve;
pub mod tls;
