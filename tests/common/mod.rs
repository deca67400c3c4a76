//! Helpers shared by the integration tests. Each test file uses what it needs.
#![allow(dead_code)]

pub mod graph_sim;
pub mod handler_process;
