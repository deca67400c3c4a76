//! Helpers shared by the integration tests. Each test file uses what it needs.
#![allow(dead_code)]

pub mod cosmos_emulator;
pub mod handler_process;
pub mod store_cases;
