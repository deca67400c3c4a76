//! Helpers shared by the integration tests. Each test file uses what it needs.
#![allow(dead_code)]

pub mod handler_process;
pub mod ingestion;
pub mod scripted_tenant;
pub mod token_endpoint;
