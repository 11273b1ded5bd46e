//! `xds_resource`: one resource of control's config stream as ztunnel and the waypoint decode it
//! (protobuf, then field checks into the model). Besides "no panic" it checks that what decodes
//! survives a round trip: encoding the decoded value and decoding that gives the same value, so
//! what control sends is what the proxies apply.

use mesh_xds::convert::{decode, encode};
use mesh_xds::pb;
use prost::Message;

/// Decodes `data` as a `Resource` and checks the round trip.
pub fn xds_resource(data: &[u8]) {
    xds_decodes(data);
}

/// [`xds_resource`], returning whether the resource decoded.
pub fn xds_decodes(data: &[u8]) -> bool {
    let Ok(resource) = pb::Resource::decode(data) else {
        return false;
    };
    let Ok(value) = decode(&resource) else {
        return false;
    };
    let again = encode(&resource.name, &resource.version, &value);
    let back = decode(&again)
        .unwrap_or_else(|e| panic!("a decoded resource does not decode once encoded: {e}"));
    assert_eq!(
        back, value,
        "a resource changed in an encode/decode round trip"
    );
    true
}

/// Every resource of a local config file (ztunnel's `--config` format), encoded for the wire.
pub fn xds_seeds(config_yaml: &str) -> Vec<Vec<u8>> {
    let Ok(snapshot) = mesh_api::file::parse(config_yaml) else {
        return Vec::new();
    };
    mesh_xds::convert::values_of(snapshot.parts())
        .map(|(name, value)| encode(&name, "1", &value).encode_to_vec())
        .collect()
}
