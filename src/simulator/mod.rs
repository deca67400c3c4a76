//! The Graph simulator: a loopback stand-in for Microsoft Graph and the token endpoints, shared by
//! tests, the local run and the benchmarks (filled in by the Graph capability).
