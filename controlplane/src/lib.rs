//! xdpgate's control plane: loads and attaches the XDP program, serves the
//! API, runs the namespace lab. `main.rs` only parses flags and calls in.
pub mod bpffs;
pub mod cli;
pub mod client;
pub mod config;
pub mod conntrack;
pub mod daemon;
pub mod dataplane;
pub mod db;
pub mod dir24;
pub mod events;
pub mod fib;
pub mod firewall;
pub mod firewall_log;
pub mod flowexport;
pub mod http;
pub mod ifinfo;
pub mod lab;
pub mod loadgen;
pub mod managed;
pub mod netlink;
pub mod netns;
pub mod outbox;
pub mod static_routes;
pub mod testrun;
pub mod tls;
pub mod token;
