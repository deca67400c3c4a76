//! Helpers shared by the integration tests. Each test file uses what it needs.
#![allow(dead_code)]

pub mod arm;
pub mod arm_ttk;
pub mod cosmos_emulator;
pub mod environment;
pub mod fake_az;
pub mod graph_sim;
pub mod handler_process;
pub mod host_runs;
pub mod ingestion;
pub mod log_capture;
pub mod oracle;
pub mod seeded;
pub mod store_cases;
pub mod tls_relay;
pub mod token_endpoint;
