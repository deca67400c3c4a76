//! Teams Presence: records Microsoft Teams availability changes of Entra ID group members.
//!
//! Runs as an Azure Functions custom handler ([`handler`]) whose timer invocations drive the
//! [`cycle`]: members and presence from Microsoft Graph ([`graph`]), changes into history
//! ([`store`]).

pub mod app;
pub mod config;
pub mod cycle;
pub mod demo;
pub mod functions_host;
pub mod graph;
pub mod handler;
pub mod identity;
pub mod model;
pub mod notifications;
pub mod privacy;
pub mod report;
pub mod rights;
pub mod run;
pub mod simulator;
pub mod spans;
pub mod store;
pub mod telemetry;
