//! Generated code for the `c2m.v1` protobuf package, and nothing else: only the server
//! crate and clients (examples, tests) depend on this crate, so protobuf types never leak
//! into the domain, store or planner.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("c2m.v1");
}

/// The encoded file descriptor set, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("c2m_descriptor");
