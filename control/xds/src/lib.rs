//! control's gRPC protocol (`control/proto/mesh_control.proto`: the config stream and the CA) and the proxy side
//! of it: [`convert`] between the wire and `mesh-api` types, [`channel`] (TLS to control, verified against the
//! mesh root and control's identity), [`client`] (the config stream with ACK/NACK and resume) and [`ca`]
//! (certificate requests).

pub mod ca;
pub mod channel;
pub mod client;
pub mod convert;

/// Generated protobuf messages and gRPC stubs.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("mesh.control.v1");
}

/// gRPC metadata key carrying the caller's token.
pub const AUTHORIZATION: &str = "authorization";
/// Proxy kind of ztunnels in `ConfigRequest.kind`.
pub const KIND_ZTUNNEL: &str = "ztunnel";
/// Proxy kind of waypoints in `ConfigRequest.kind` (`node` is then `<namespace>/<gateway name>`).
pub const KIND_WAYPOINT: &str = "waypoint";
/// Port control serves gRPC on (DESIGN.md 3).
pub const CONTROL_PORT: u16 = 15012;

/// Adds `authorization: Bearer <token>` to a request.
pub fn with_token<T>(
    mut req: tonic::Request<T>,
    token: &str,
) -> Result<tonic::Request<T>, tonic::Status> {
    let value = format!("Bearer {}", token.trim()).parse().map_err(|_| {
        tonic::Status::invalid_argument("the token contains characters not allowed in a header")
    })?;
    req.metadata_mut().insert(AUTHORIZATION, value);
    Ok(req)
}
